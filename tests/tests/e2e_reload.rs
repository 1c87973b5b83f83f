//! Hot reload: SIGHUP and `POST /admin/reload` apply a new config without dropping
//! connections; an invalid file is refused with `tollgate check`'s messages and the
//! running config stays.

use serde_json::json;
use tollgate_tests::harness;
use tollgate_tests::mock;

fn config(url: &str, allow: &str) -> String {
    format!(
        r#"
providers: [{{ name: mock, kind: openai, base_url: "{url}", models: ["*"] }}]
pricing: {{ overrides: {{ mock-a: {{ input_per_mtok: 1, output_per_mtok: 1 }}, mock-b: {{ input_per_mtok: 1, output_per_mtok: 1 }} }} }}
policies: {{ p: {{ models: {{ allow: ["{allow}"] }} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#
    )
}

async fn status(tg: &harness::Tollgate, model: &str) -> u16 {
    tg.client("a1")
        .chat(json!({"model": model, "messages": [{"role": "user", "content": "SAY: ok"}]}))
        .await
        .status
}

#[tokio::test]
async fn reload_applies_valid_configs_and_keeps_the_running_one_otherwise() {
    let mock = mock::provider().spawn().await;
    let mut tg = harness::tollgate()
        .config(&config(&mock.base_url(), "mock-a"))
        .spawn()
        .await;
    assert_eq!(status(&tg, "mock-a").await, 200);
    assert_eq!(status(&tg, "mock-b").await, 403);

    // POST /admin/reload with a new allow-list.
    tg.rewrite_config(&config(&mock.base_url(), "mock-b"));
    let r = tg.admin().post("/admin/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(status(&tg, "mock-b").await, 200);
    assert_eq!(status(&tg, "mock-a").await, 403);

    // An invalid file is refused with field paths; the running config stays.
    std::fs::write(
        &tg.config_path,
        "policies: { p: { mode: loud } }\nagents: { a1: { scope: acme/a1, policy: nope } }\n",
    )
    .unwrap();
    let r = tg.admin().post("/admin/reload", &json!({})).await;
    assert_eq!(r.status, 400);
    let problems = r.json()["error"]["problems"].to_string();
    assert!(problems.contains("policies.p.mode"), "{problems}");
    assert!(problems.contains("agents.a1.policy"), "{problems}");
    assert_eq!(status(&tg, "mock-b").await, 200);

    // SIGHUP applies the file too; wait for the reload counter rather than a fixed time.
    tg.rewrite_config(&config(&mock.base_url(), "mock-a"));
    let before = reloads(&tg).await;
    tg.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while reloads(&tg).await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP was not applied:\n{}",
            tg.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status(&tg, "mock-a").await, 200);
    assert_eq!(status(&tg, "mock-b").await, 403);
}

async fn reloads(tg: &harness::Tollgate) -> u64 {
    let text = tg.admin().get("/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with("tollgate_config_reloads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
