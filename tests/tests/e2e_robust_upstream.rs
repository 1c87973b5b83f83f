//! The provider's side under failure or hostility: a provider that keeps failing is ejected
//! from its chain for a while; which statuses fall back is configurable.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, InFlight, Tollgate};
use tollgate_tests::mock;

fn last_record(tg: &Tollgate) -> Value {
    let out = tg.cli(&["audit", "tail", "-n", "1", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("audit json");
    v["records"][0].clone()
}

async fn metrics(tg: &Tollgate) -> String {
    let reply = tg.admin().get("/metrics").await;
    assert_eq!(reply.status, 200);
    reply.text()
}

/// A chain whose first provider answers 502 to everything (a relay to a closed port), with
/// a working provider behind it.
fn chain(bad: &InFlight, good: &str, server: &str) -> String {
    format!(
        r#"
server: {{ {server} }}
providers:
  - {{ name: bad, kind: openai, base_url: "{bad}", models: ["gpt-4o-mini"], fallback: [good] }}
  - {{ name: good, kind: openai, base_url: "{good}", models: ["never-*"] }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
        bad = bad.base_url()
    )
}

fn hello() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "SAY: hello"}]})
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_ejected_and_skipped_while_its_chain_has_another() {
    let good = mock::provider().spawn().await;
    let bad = InFlight::start(&format!("http://127.0.0.1:{}", harness::free_port())).await;
    // Default ejection: three failures in a row, thirty seconds.
    let tg = harness::tollgate()
        .config(&chain(&bad, &good.base_url(), ""))
        .spawn()
        .await;
    let c = tg.client("a1");
    for i in 1..=3 {
        let r = c.chat(hello()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            bad.total(),
            i,
            "failure {i} was tried on the failing provider"
        );
        let reasons = last_record(&tg)["reasons"].to_string();
        assert!(reasons.contains("fallback:bad:502"), "{reasons}");
    }
    let r = c.chat(hello()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(bad.total(), 3, "the ejected provider was skipped");
    assert_eq!(good.requests().len(), 4);
    let reasons = last_record(&tg)["reasons"].to_string();
    assert!(reasons.contains("fallback:bad:ejected"), "{reasons}");
    let m = metrics(&tg).await;
    assert!(
        m.contains("tollgate_provider_ejections_total{provider=\"bad\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tollgate_provider_ejected{provider=\"bad\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tollgate_provider_ejected{provider=\"good\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn only_the_configured_statuses_fall_back() {
    let good = mock::provider().spawn().await;
    let bad = InFlight::start(&format!("http://127.0.0.1:{}", harness::free_port())).await;
    let tg = harness::tollgate()
        .config(&chain(
            &bad,
            &good.base_url(),
            "fallback: { statuses: [429], eject_after: 0 }",
        ))
        .spawn()
        .await;
    let r = tg.client("a1").chat(hello()).await;
    assert_eq!(r.status, 502, "the provider's own answer: {}", r.text());
    assert!(good.requests().is_empty(), "a 502 does not fall back here");
    assert_eq!(bad.total(), 1);
}
