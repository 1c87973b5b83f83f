//! Per-run budgets from `x-tollgate-run`, and limits changed at run time through the admin
//! API and the `tollgate budgets` commands, end to end.

use serde_json::json;
use tollgate_tests::harness::{self, Reply, Tollgate, usd_to_nanos};
use tollgate_tests::mock::{self, MockProvider};

/// Output at 0.001 USD a token, input at 0.000001: a prompt costs less than one output
/// token, so a 100-token request costs 0.1 USD and a little.
async fn setup() -> (MockProvider, Tollgate) {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing:
  overrides:
    mock-run: {{ input_per_mtok: 1.0, output_per_mtok: 1000.0, max_output_tokens: 100 }}
scopes:
  acme/a1: {{ budget: {{ limit_usd: 1, period: total }} }}
policies: {{ p: {{ run_budget_usd: 0.15, caps: {{ min_output_tokens: 20 }} }} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    (mock, tg)
}

/// A chat whose answer fills the 100 tokens it asks for, in run `run` if given.
async fn chat(tg: &Tollgate, run: Option<&str>) -> Reply {
    let body = json!({
        "model": "mock-run",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "WORDS: 300"}],
    });
    let mut headers = vec![("content-type", "application/json")];
    if let Some(run) = run {
        headers.push(("x-tollgate-run", run));
    }
    tg.client("a1")
        .post_raw(
            "/v1/chat/completions",
            serde_json::to_vec(&body).expect("json"),
            &headers,
        )
        .await
}

fn cost(reply: &Reply) -> i64 {
    usd_to_nanos(reply.header("x-tollgate-cost-usd").expect("cost header"))
}

fn assert_budget_exceeded(reply: &Reply, scope: &str) {
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.error_code().as_deref(), Some("budget_exceeded"));
    assert_eq!(reply.header("x-should-retry"), Some("false"));
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(&format!("`{scope}`")),
        "names {scope}: {message}"
    );
}

#[tokio::test]
async fn each_run_has_its_own_budget() {
    let (mock, tg) = setup().await;
    let first = chat(&tg, Some("r1")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-tollgate-decision"), Some("allow"));
    // 0.15 - 0.1 leaves the run room for 49 tokens: capped, not denied.
    let second = chat(&tg, Some("r1")).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        second.header("x-tollgate-decision"),
        Some("allow_with_caps")
    );
    assert_eq!(second.header("x-tollgate-caps"), Some("max_tokens=49"));
    // Less than 0.001 left: below the 20-token minimum.
    assert_budget_exceeded(&chat(&tg, Some("r1")).await, "acme/a1/run:r1");
    // Another run, and no run at all, still have room.
    let other = chat(&tg, Some("r2")).await;
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(other.header("x-tollgate-decision"), Some("allow"));
    let plain = chat(&tg, None).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(mock.requests().len(), 4);

    let run = tg.budget("acme/a1/run:r1").await;
    assert_eq!(run.limit, 150_000_000, "run_budget_usd: {run:?}");
    assert_eq!(run.spent, cost(&first) + cost(&second));
    assert!(run.spent <= run.limit, "{run:?}");
    assert_eq!(tg.budget("acme/a1/run:r2").await.spent, cost(&other));
    let agent = tg.budget("acme/a1").await;
    assert_eq!(
        agent.spent,
        cost(&first) + cost(&second) + cost(&other) + cost(&plain),
        "runs charge the agent's scope too"
    );
    assert_eq!(agent.reserved, 0);
}

#[tokio::test]
async fn a_limit_set_at_run_time_applies_to_the_next_request() {
    let (mock, tg) = setup().await;
    let first = chat(&tg, None).await;
    assert_eq!(first.status, 200, "{}", first.text());

    let lowered = tg
        .admin()
        .post(
            "/admin/budgets",
            &json!({"scope": "acme/a1", "limit_usd": 0.12, "period": "total"}),
        )
        .await;
    assert_eq!(lowered.status, 200, "{}", lowered.text());
    assert_eq!(lowered.json()["budgets"][0]["limit_usd"], "0.12");
    assert_eq!(lowered.json()["budgets"][0]["source"], "override");
    assert_budget_exceeded(&chat(&tg, None).await, "acme/a1");

    let raised = tg
        .admin()
        .post(
            "/admin/budgets",
            &json!({"scope": "acme/a1", "limit_usd": 5, "period": "total"}),
        )
        .await;
    assert_eq!(raised.status, 200, "{}", raised.text());
    let again = chat(&tg, None).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("x-tollgate-decision"), Some("allow"));
    assert_eq!(
        mock.requests().len(),
        2,
        "the denied request was not forwarded"
    );
    let row = tg.budget("acme/a1").await;
    assert_eq!(
        (row.limit, row.source.as_str()),
        (5_000_000_000, "override")
    );
    assert_eq!(row.spent, cost(&first) + cost(&again));
}

/// The row of `scope` in `tollgate budgets show`'s table, column by column.
fn table_row(stdout: &str, scope: &str) -> Vec<String> {
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "SCOPE",
            "PERIOD",
            "WINDOW",
            "LIMIT_USD",
            "SPENT_USD",
            "RESERVED_USD",
            "REMAINING_USD",
            "SOURCE"
        ],
        "{stdout}"
    );
    lines
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(scope))
        .unwrap_or_else(|| panic!("no row for {scope} in:\n{stdout}"))
}

#[tokio::test]
async fn the_budgets_commands_show_and_set_limits() {
    let (_mock, tg) = setup().await;
    let first = chat(&tg, None).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let spent = first
        .header("x-tollgate-cost-usd")
        .expect("cost")
        .to_string();

    let show = tg.cli(&["budgets", "show"]);
    let stdout = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(
        show.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let row = table_row(&stdout, "acme/a1");
    assert_eq!(
        row,
        [
            "acme/a1".to_string(),
            "total".into(),
            "total".into(),
            "1".into(),
            spent.clone(),
            "0".into(),
            format_usd(1_000_000_000 - usd_to_nanos(&spent)),
            "config".into(),
        ]
    );

    let set = tg.cli(&[
        "budgets",
        "set",
        "acme/a1",
        "--limit-usd",
        "0.15",
        "--period",
        "total",
    ]);
    let stdout = String::from_utf8_lossy(&set.stdout).into_owned();
    assert!(
        set.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let row = table_row(&stdout, "acme/a1");
    assert_eq!((row[3].as_str(), row[7].as_str()), ("0.15", "override"));
    // 0.15 less the ~0.1 spent affords 49 tokens: the next request is capped by the new limit.
    let capped = chat(&tg, None).await;
    assert_eq!(capped.status, 200, "{}", capped.text());
    assert_eq!(capped.header("x-tollgate-caps"), Some("max_tokens=49"));

    let show = tg.cli(&["budgets", "show", "acme/a1"]);
    let stdout = String::from_utf8_lossy(&show.stdout).into_owned();
    let row = table_row(&stdout, "acme/a1");
    assert_eq!(
        usd_to_nanos(&row[4]),
        usd_to_nanos(&spent) + cost(&capped),
        "{stdout}"
    );
}

/// Formats nano-USD the way tollgate does: no trailing zeros.
fn format_usd(nanos: i64) -> String {
    let text = format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
