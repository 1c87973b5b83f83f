//! Rate limits end to end, each raced by 200 simultaneous requests: requests per minute,
//! tokens per minute, concurrent requests per agent, and a scope's requests per minute
//! shared by the agents under it. Each runs through one tollgate on the embedded store and
//! through two tollgate processes sharing one Redis (a key prefix of the test's own): the
//! limit holds exactly, refusals are 429 `rate_limit_exceeded` with `Retry-After` and the
//! OpenAI `x-ratelimit-*` headers, and nothing refused reaches the provider.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;
use tollgate_tests::harness::{self, InFlight, Reply, SharedPrefix, Tollgate};
use tollgate_tests::mock;

const RACE: usize = 200;

/// An o200k-family name, so tollgate's token estimate and the mock's usage count the prompt
/// the same way, and a price so every request is estimated.
const PRICING: &str = r#"
pricing:
  overrides:
    gpt-4o-rate: { input_per_mtok: 1.0, output_per_mtok: 1.0, max_output_tokens: 200 }
"#;

enum Backend {
    Embedded,
    /// Two processes sharing the shared Redis under a fresh prefix.
    Redis,
}

struct Setup {
    _prefix: Option<SharedPrefix>,
    instances: Vec<Tollgate>,
}

impl Setup {
    async fn start(backend: Backend, provider_url: &str, sections: &str) -> Setup {
        let yaml = format!(
            "providers: [{{ name: mock, kind: openai, base_url: \"{provider_url}\", models: [\"*\"] }}]\n{PRICING}{sections}"
        );
        match backend {
            Backend::Embedded => Setup {
                _prefix: None,
                instances: vec![harness::tollgate().config(&yaml).spawn().await],
            },
            Backend::Redis => {
                let prefix = SharedPrefix::new();
                let mut instances = Vec::new();
                for _ in 0..2 {
                    instances.push(
                        harness::tollgate()
                            .redis(prefix.as_str())
                            .config(&yaml)
                            .spawn()
                            .await,
                    );
                }
                Setup {
                    _prefix: Some(prefix),
                    instances,
                }
            }
        }
    }

    fn logs(&self) -> String {
        self.instances.iter().map(Tollgate::logs).collect()
    }
}

fn short_chat() -> Value {
    json!({
        "model": "gpt-4o-rate",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "SAY: ok"}],
    })
}

/// Sends `RACE` requests at once, agent `agents[i % len]` through instance `i % len`.
async fn race(setup: &Setup, agents: &[&str], body: &Value) -> Vec<(String, Reply)> {
    let mut set = JoinSet::new();
    for i in 0..RACE {
        let agent = agents[i % agents.len()].to_string();
        let tg = &setup.instances[i % setup.instances.len()];
        let client = tg.client(&agent);
        let body = body.clone();
        set.spawn(async move { (agent, client.chat(body).await) });
    }
    let mut replies = Vec::new();
    while let Some(r) = set.join_next().await {
        replies.push(r.expect("request task"));
    }
    replies
}

fn header_u64(r: &Reply, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name} on {} {:?}", r.status, r.headers))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {:?}", r.header(name)))
}

/// The OpenAI shape of a rate-limit refusal, with a usable `Retry-After`.
fn assert_rate_limited(r: &Reply) {
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        r.json()["error"]["type"],
        "rate_limit_error",
        "{}",
        r.text()
    );
    assert_eq!(r.error_code().as_deref(), Some("rate_limit_exceeded"));
    assert_eq!(r.header("x-tollgate-decision"), Some("deny"));
    let retry = header_u64(r, "retry-after");
    assert!(
        (1..=60).contains(&retry),
        "Retry-After {retry} is not within the minute window"
    );
}

/// Splits replies into the allowed and the refused; anything else fails the test.
fn split(replies: Vec<(String, Reply)>, logs: &str) -> (Vec<(String, Reply)>, Vec<Reply>) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for (agent, r) in replies {
        match r.status {
            200 => ok.push((agent, r)),
            429 => refused.push(r),
            other => panic!("unexpected {other}: {}\n{logs}", r.text()),
        }
    }
    (ok, refused)
}

// ---- requests per minute -------------------------------------------------------------

const RPM: u64 = 50;

async fn rpm_is_exact(backend: Backend) {
    let mock = mock::provider().spawn().await;
    let setup = Setup::start(
        backend,
        &mock.base_url(),
        &format!(
            "policies: {{ p: {{ rate: {{ rpm: {RPM} }} }} }}\nagents: {{ a1: {{ scope: acme/a1, policy: p }} }}\n"
        ),
    )
    .await;
    let (ok, refused) = split(race(&setup, &["a1"], &short_chat()).await, &setup.logs());
    assert_eq!(ok.len() as u64, RPM, "exactly rpm requests pass");
    assert_eq!(
        mock.requests().len() as u64,
        RPM,
        "refused ones never reach the provider"
    );
    // Each admitted request saw the window one fuller than the one before it: the remaining
    // counts are exactly 49, 48, ..., 0, one each, whichever instance answered.
    let mut remaining: Vec<u64> = ok
        .iter()
        .map(|(_, r)| {
            assert_eq!(header_u64(r, "x-ratelimit-limit-requests"), RPM);
            assert!(
                r.header("x-ratelimit-reset-requests").is_some(),
                "{:?}",
                r.headers
            );
            header_u64(r, "x-ratelimit-remaining-requests")
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..RPM).collect::<Vec<_>>());
    for r in &refused {
        assert_rate_limited(r);
        assert_eq!(header_u64(r, "x-ratelimit-limit-requests"), RPM);
        assert_eq!(header_u64(r, "x-ratelimit-remaining-requests"), 0);
        let reset = r.header("x-ratelimit-reset-requests").expect("reset");
        assert!(reset.ends_with('s'), "OpenAI duration format: {reset}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_admits_exactly_the_limit_of_200_concurrent_requests_embedded() {
    rpm_is_exact(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpm_admits_exactly_the_limit_across_two_instances_sharing_redis() {
    rpm_is_exact(Backend::Redis).await;
}

// ---- tokens per minute ---------------------------------------------------------------

const TPM: u64 = 3000;

/// Asks for 100 output tokens and gets exactly 100 (`WORDS:` more than the limit), so the
/// usage that corrects the window at the end equals the estimate it was counted with.
fn long_chat() -> Value {
    json!({
        "model": "gpt-4o-rate",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "WORDS: 300"}],
    })
}

async fn tpm_is_exact(backend: Backend) {
    let mock = mock::provider().spawn().await;
    let setup = Setup::start(
        backend,
        &mock.base_url(),
        &format!(
            "policies: {{ p: {{ rate: {{ tpm: {TPM} }} }} }}\nagents:\n  a1: {{ scope: acme/a1, policy: p }}\n  probe: {{ scope: acme/probe, policy: p }}\n"
        ),
    )
    .await;
    // One request of another agent (its own window) measures what a request counts.
    let probe = setup.instances[0].client("probe").chat(long_chat()).await;
    assert_eq!(probe.status, 200, "{}", probe.text());
    assert_eq!(header_u64(&probe, "x-ratelimit-limit-tokens"), TPM);
    let counted = TPM - header_u64(&probe, "x-ratelimit-remaining-tokens");
    let usage = &probe.json()["usage"];
    let used =
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(
        usage["completion_tokens"], 100,
        "the mock fills the output limit"
    );
    assert_eq!(
        counted, used,
        "the input estimate plus the output limit equals the usage, so the end-of-request \
         correction is zero and the race below has one exact answer"
    );
    let fits = TPM / counted;
    assert!((10..RACE as u64).contains(&fits), "{fits} requests fit");

    let (ok, refused) = split(race(&setup, &["a1"], &long_chat()).await, &setup.logs());
    assert_eq!(
        ok.len() as u64,
        fits,
        "tpm {TPM} at {counted} tokens a request admits exactly {fits}"
    );
    assert_eq!(
        mock.requests().len() as u64,
        fits + 1,
        "the probe and the admitted"
    );
    let mut remaining: Vec<u64> = ok
        .iter()
        .map(|(_, r)| header_u64(r, "x-ratelimit-remaining-tokens"))
        .collect();
    remaining.sort_unstable();
    let expected: Vec<u64> = (1..=fits).rev().map(|k| TPM - k * counted).collect();
    assert_eq!(
        remaining, expected,
        "each admitted request counted {counted} tokens"
    );
    for r in &refused {
        assert_rate_limited(r);
        assert_eq!(header_u64(r, "x-ratelimit-limit-tokens"), TPM);
        assert!(
            header_u64(r, "x-ratelimit-remaining-tokens") < counted,
            "a refused request did not fit: {:?}",
            r.headers
        );
        assert!(r.header("x-ratelimit-reset-tokens").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_admits_exactly_what_fits_of_200_concurrent_requests_embedded() {
    tpm_is_exact(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_admits_exactly_what_fits_across_two_instances_sharing_redis() {
    tpm_is_exact(Backend::Redis).await;
}

// ---- concurrent requests -------------------------------------------------------------

const CONCURRENT: usize = 4;

/// A stream of some 40 events 10 ms apart: long enough that 200 requests sent at once
/// overlap, so the limit is what keeps them apart.
fn slow_stream() -> Value {
    json!({
        "model": "gpt-4o-rate",
        "stream": true,
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "WORDS: 40"}],
    })
}

async fn concurrent_is_exact(backend: Backend) {
    let mock = mock::provider()
        .chunk_delay(Duration::from_millis(10))
        .spawn()
        .await;
    let gauge = InFlight::start(&mock.root_url()).await;
    let setup = Setup::start(
        backend,
        &gauge.base_url(),
        &format!(
            "policies: {{ p: {{ rate: {{ concurrent: {CONCURRENT} }} }} }}\nagents: {{ a1: {{ scope: acme/a1, policy: p }} }}\n"
        ),
    )
    .await;
    let (ok, refused) = split(race(&setup, &["a1"], &slow_stream()).await, &setup.logs());
    assert!(
        gauge.max() <= CONCURRENT,
        "{} requests were in flight at the provider at once, limit {CONCURRENT}",
        gauge.max()
    );
    assert_eq!(
        gauge.max(),
        CONCURRENT,
        "200 overlapping streams used every lease"
    );
    assert_eq!(
        gauge.total(),
        ok.len(),
        "only admitted requests were forwarded"
    );
    assert!(!refused.is_empty(), "the race was refused in part");
    for (_, r) in &ok {
        let events = r.events();
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{}",
            r.text()
        );
    }
    for r in &refused {
        assert_rate_limited(r);
    }
    // Every lease came back: the limit admits a full set of overlapping streams again (the
    // last lease returns just after its stream ended, hence the bounded retry).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut set = JoinSet::new();
        for i in 0..CONCURRENT {
            let client = setup.instances[i % setup.instances.len()].client("a1");
            set.spawn(async move { client.chat(slow_stream()).await.status });
        }
        let mut statuses = Vec::new();
        while let Some(s) = set.join_next().await {
            statuses.push(s.expect("request task"));
        }
        if statuses.iter().all(|s| *s == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leases were not returned: {statuses:?}\n{}",
            setup.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gauge.max() <= CONCURRENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limit_bounds_streams_in_flight_at_the_provider_embedded() {
    concurrent_is_exact(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limit_bounds_streams_across_two_instances_sharing_redis() {
    concurrent_is_exact(Backend::Redis).await;
}

// ---- a scope's requests per minute, shared -------------------------------------------

const SCOPE_RPM: usize = 50;

fn scope_config() -> String {
    format!(
        r#"
scopes:
  acme/team: {{ rate: {{ rpm: {SCOPE_RPM} }} }}
policies: {{ p: {{}} }}
agents:
  a1: {{ scope: acme/team/a1, policy: p }}
  a2: {{ scope: acme/team/a2, policy: p }}
  outsider: {{ scope: acme/other, policy: p }}
"#
    )
}

async fn scope_rpm_is_shared(backend: Backend) {
    let mock = mock::provider().spawn().await;
    let setup = Setup::start(backend, &mock.base_url(), &scope_config()).await;
    // Each agent spends part of the scope's minute first, so both certainly share it.
    for agent in ["a1", "a2", "a2"] {
        let r = setup.instances[0].client(agent).chat(short_chat()).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let (ok, refused) = split(
        race(&setup, &["a1", "a2"], &short_chat()).await,
        &setup.logs(),
    );
    assert_eq!(
        ok.len() + 3,
        SCOPE_RPM,
        "the two agents together get exactly the scope's {SCOPE_RPM}"
    );
    assert_eq!(mock.requests().len(), SCOPE_RPM);
    for r in &refused {
        assert_rate_limited(r);
    }
    // Both are held now, and an agent outside the scope is not.
    for agent in ["a1", "a2"] {
        let r = setup.instances[1 % setup.instances.len()]
            .client(agent)
            .chat(short_chat())
            .await;
        assert_rate_limited(&r);
    }
    let r = setup.instances[0]
        .client("outsider")
        .chat(short_chat())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_rpm_is_shared_by_its_agents_embedded() {
    scope_rpm_is_shared(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_rpm_is_shared_by_its_agents_across_two_instances_sharing_redis() {
    scope_rpm_is_shared(Backend::Redis).await;
}

/// A refusal by a scope's limit says which limit it hit, as OpenAI's headers do for the
/// organisation's limits: `x-ratelimit-limit-requests` and the rest of the set.
#[tokio::test]
async fn a_scope_refusal_carries_the_ratelimit_headers_of_the_scope() {
    let mock = mock::provider().spawn().await;
    let setup = Setup::start(
        Backend::Embedded,
        &mock.base_url(),
        "scopes: { acme/team: { rate: { rpm: 2 } } }\npolicies: { p: {} }\nagents: { a1: { scope: acme/team/a1, policy: p } }\n",
    )
    .await;
    let c = setup.instances[0].client("a1");
    for _ in 0..2 {
        assert_eq!(c.chat(short_chat()).await.status, 200);
    }
    let r = c.chat(short_chat()).await;
    assert_rate_limited(&r);
    assert_eq!(
        header_u64(&r, "x-ratelimit-limit-requests"),
        2,
        "{:?}",
        r.headers
    );
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 0);
    assert!(r.header("x-ratelimit-reset-requests").is_some());
}
