//! The Cycles protocol through the official `runcycles` Python client (and its `@cycles`
//! decorator) against a running tollgate: the client's own calls, bodies and error codes,
//! on the same ledger as the LLM path.

use serde_json::{Value, json};
use tollgate_tests::harness::{self, Tollgate};
use tollgate_tests::mock;

/// A dollar in the protocol's unit.
const USD: i64 = 100_000_000;
/// Nano-USD in one `USD_MICROCENTS`.
const NANOS: i64 = 10;

/// Runs a Python snippet with a `runcycles` client for `key` (`client`, `cfg`), helpers
/// (`ok`, `err`, `sub`) and prints the JSON the snippet leaves in `out`.
async fn run(tg: &Tollgate, key: &str, code: &str) -> Value {
    let prelude = r#"
import json, os, time, threading
from concurrent.futures import ThreadPoolExecutor
from runcycles import CyclesClient, CyclesConfig, cycles
from runcycles.exceptions import BudgetExceededError, CyclesProtocolError
BASE = os.environ["OPENAI_BASE_URL"].removesuffix("/v1")
cfg = CyclesConfig(base_url=BASE, api_key=os.environ["OPENAI_API_KEY"], retry_enabled=False)
client = CyclesClient(cfg)
out = {}
def ok(resp):
    assert resp.is_success, (resp.status, resp.body)
    return resp.body
def err(resp):
    assert not resp.is_success, (resp.status, resp.body)
    b = resp.body or {}
    return {"status": resp.status, "error": b.get("error"), "message": b.get("message"),
            "request_id": b.get("request_id"), "trace_id": b.get("trace_id"), "details": b.get("details")}
def sub(**kw):
    return {"tenant": "acme", "workspace": "research", **kw}
def usd(n):
    return {"unit": "USD_MICROCENTS", "amount": n}
"#;
    let script = format!("{prelude}\n{code}\nprint(json.dumps(out))");
    let out = harness::python(&script, &tg.base_url(), key).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}\ntollgate log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tg.logs()
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("null"))
        .expect("the script prints JSON")
}

async fn spawn(extra: &str) -> Tollgate {
    harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }}]
scopes: {{ acme: {{ budget: {{ limit_usd: 1.00, period: total }} }} }}
policies: {{ p: {{ run_budget_usd: 0.05 }} }}
agents: {{ a1: {{ scope: acme/research/a1, policy: p }}, a2: {{ scope: acme/research/a2, policy: p }} }}
{extra}
"#
        ))
        .spawn()
        .await
}

#[tokio::test]
async fn the_runcycles_client_reserves_commits_releases_and_extends() {
    let tg = spawn("").await;
    let v = run(
        &tg,
        &tg.key("a1"),
        r#"
req = {"idempotency_key": "r1", "subject": sub(agent="a1"),
       "action": {"kind": "tool.search", "name": "web"}, "estimate": usd(40_000_000), "ttl_ms": 60000}
first = client.create_reservation(req)
out["reserve"] = ok(first)
out["headers"] = first.headers
rid = out["reserve"]["reservation_id"]
out["replay"] = ok(client.create_reservation(req))
out["mismatch"] = err(client.create_reservation({**req, "estimate": usd(1)}))
out["get"] = ok(client.get_reservation(rid))
out["list"] = [r["reservation_id"] for r in ok(client.list_reservations(status="ACTIVE"))["reservations"]]
out["extend"] = ok(client.extend_reservation(rid, {"idempotency_key": "e1", "extend_by_ms": 10000}))
commit = {"idempotency_key": "c1", "actual": usd(25_000_000), "metrics": {"tokens_input": 10}}
out["commit"] = ok(client.commit_reservation(rid, commit))
out["commit_replay"] = ok(client.commit_reservation(rid, commit))
out["commit_again"] = err(client.commit_reservation(rid, {**commit, "idempotency_key": "c2"}))
out["after_commit"] = ok(client.get_reservation(rid))
r2 = ok(client.create_reservation({**req, "idempotency_key": "r2", "estimate": usd(10_000_000)}))
out["release"] = ok(client.release_reservation(r2["reservation_id"], {"idempotency_key": "x1", "reason": "not needed"}))
out["release_again"] = err(client.release_reservation(r2["reservation_id"], {"idempotency_key": "x2"}))
out["missing"] = err(client.commit_reservation("rsv_a1_000000000000000000000000", commit))
# 25M of 100M spent: 80M does not fit, 70M does.
dec = {"idempotency_key": "d1", "subject": sub(agent="a1"), "action": {"kind": "k", "name": "n"}, "estimate": usd(80_000_000)}
out["decide_deny"] = ok(client.decide(dec))
out["decide_allow"] = ok(client.decide({**dec, "idempotency_key": "d2", "estimate": usd(70_000_000)}))
out["dry_deny"] = ok(client.create_reservation({**req, "idempotency_key": "dry1", "estimate": usd(80_000_000), "dry_run": True}))
out["dry_allow"] = ok(client.create_reservation({**req, "idempotency_key": "dry2", "estimate": usd(1), "dry_run": True}))
out["over"] = err(client.create_reservation({**req, "idempotency_key": "r3", "estimate": usd(80_000_000)}))
out["tokens"] = err(client.create_reservation({**req, "idempotency_key": "r4", "estimate": {"unit": "TOKENS", "amount": 5}}))
out["unknown_field"] = err(client.create_reservation({**req, "idempotency_key": "r5", "extra": 1}))
toolset = ok(client.create_reservation({**req, "idempotency_key": "t1", "subject": sub(agent="a1", toolset="search"), "estimate": usd(1_000_000)}))
out["toolset"] = toolset
ok(client.release_reservation(toolset["reservation_id"], {"idempotency_key": "t1r"}))
out["toolset_over"] = err(client.create_reservation({**req, "idempotency_key": "t2", "subject": sub(agent="a1", toolset="search"), "estimate": usd(6_000_000)}))
out["sibling"] = err(client.create_reservation({**req, "idempotency_key": "f1", "subject": sub(agent="a2")}))
out["tenant_only"] = err(client.create_reservation({**req, "idempotency_key": "f2", "subject": {"tenant": "acme"}}))
out["other_tenant"] = err(client.decide({**dec, "idempotency_key": "f3", "subject": {"tenant": "evil", "workspace": "research", "agent": "a1"}}))
out["balances"] = ok(client.get_balances(tenant="acme"))["balances"]
out["balances_sibling"] = err(client.get_balances(tenant="acme", workspace="research", agent="a2"))
ev = {"idempotency_key": "ev1", "subject": sub(agent="a1"), "action": {"kind": "k", "name": "n"}, "actual": usd(5_000_000)}
out["event"] = client.create_event(ev).status, ok(client.create_event(ev))
out["event_replay"] = ok(client.create_event(ev))
out["event_reject"] = err(client.create_event({**ev, "idempotency_key": "ev2", "actual": usd(200_000_000), "overage_policy": "REJECT"}))
out["event_capped"] = ok(client.create_event({**ev, "idempotency_key": "ev3", "actual": usd(200_000_000)}))
out["exhausted"] = ok(client.decide({**dec, "idempotency_key": "d3", "estimate": usd(1)}))
bad = CyclesClient(CyclesConfig(base_url=BASE, api_key="tg_not_a_key", retry_enabled=False))
out["unauthorized"] = err(bad.decide(dec))
"#,
    )
    .await;
    let r = &v["reserve"];
    assert_eq!(r["decision"], "ALLOW", "{v}");
    assert_eq!(
        r["reserved"],
        json!({"unit": "USD_MICROCENTS", "amount": 40_000_000})
    );
    assert_eq!(r["affected_scopes"], json!(["acme"]));
    assert_eq!(r["scope_path"], "acme/research/a1");
    assert!(r["remaining_ttl_ms"].as_i64().unwrap() > 0);
    let rid = r["reservation_id"].as_str().unwrap();
    // Another agent's key (as a Bearer token) may not touch the reservation.
    let other = tg
        .client("a2")
        .post(
            &format!("/v1/reservations/{rid}/release"),
            &json!({"idempotency_key": "steal"}),
        )
        .await;
    assert_eq!(other.status, 403, "{}", other.text());
    assert_eq!(other.json()["error"], "FORBIDDEN");
    // The header and the body must name the same idempotency key.
    let mismatch = tg
        .client("a1")
        .post_raw(
            "/v1/decide",
            br#"{"idempotency_key": "a", "subject": {"tenant": "acme"}, "action": {"kind": "k", "name": "n"}, "estimate": {"unit": "USD_MICROCENTS", "amount": 1}}"#.to_vec(),
            &[("x-idempotency-key", "b"), ("content-type", "application/json")],
        )
        .await;
    assert_eq!(mismatch.status, 400, "{}", mismatch.text());
    assert_eq!(mismatch.json()["error"], "INVALID_REQUEST");
    // The headers the client reads.
    assert_eq!(v["headers"]["x-cycles-tenant"], "acme");
    assert!(v["headers"]["x-request-id"].is_string());
    // Replays answer the first reservation; another payload under the key is refused.
    assert_eq!(v["replay"]["reservation_id"], rid);
    assert_eq!(v["replay"]["expires_at_ms"], r["expires_at_ms"]);
    assert_eq!(v["mismatch"]["status"], 409);
    assert_eq!(v["mismatch"]["error"], "IDEMPOTENCY_MISMATCH");
    assert_eq!(v["mismatch"]["trace_id"].as_str().unwrap().len(), 32);
    assert!(v["mismatch"]["request_id"].is_string());
    assert_eq!(v["get"]["status"], "ACTIVE");
    assert_eq!(v["get"]["subject"]["agent"], "a1");
    assert!(v["list"].as_array().unwrap().contains(&json!(rid)));
    assert_eq!(v["extend"]["status"], "ACTIVE");
    assert_eq!(
        v["extend"]["expires_at_ms"].as_i64().unwrap(),
        r["expires_at_ms"].as_i64().unwrap() + 10_000
    );
    // Commit: charged the actual, the rest released; a replay repeats it; another key is
    // told the reservation is finalized.
    assert_eq!(v["commit"]["status"], "COMMITTED");
    assert_eq!(v["commit"]["charged"]["amount"], 25_000_000);
    assert_eq!(v["commit"]["released"]["amount"], 15_000_000);
    assert_eq!(v["commit_replay"], v["commit"]);
    assert_eq!(v["commit_again"]["status"], 409);
    assert_eq!(v["commit_again"]["error"], "RESERVATION_FINALIZED");
    assert_eq!(v["after_commit"]["status"], "COMMITTED");
    assert_eq!(v["after_commit"]["committed"]["amount"], 25_000_000);
    assert_eq!(v["release"]["status"], "RELEASED");
    assert_eq!(v["release"]["released"]["amount"], 10_000_000);
    assert_eq!(v["release_again"]["error"], "RESERVATION_FINALIZED");
    assert_eq!(v["missing"]["status"], 404);
    assert_eq!(v["missing"]["error"], "NOT_FOUND");
    // Decisions and dry runs hold nothing.
    assert_eq!(v["decide_deny"]["decision"], "DENY");
    assert_eq!(v["decide_deny"]["reason_code"], "BUDGET_EXCEEDED");
    assert_eq!(v["decide_allow"]["decision"], "ALLOW");
    assert_eq!(v["dry_deny"]["decision"], "DENY");
    assert!(v["dry_deny"].get("reservation_id").is_none());
    assert_eq!(v["dry_deny"]["affected_scopes"], json!(["acme"]));
    assert_eq!(v["dry_allow"]["decision"], "ALLOW");
    assert!(v["dry_allow"].get("expires_at_ms").is_none());
    assert_eq!(v["over"]["status"], 409);
    assert_eq!(v["over"]["error"], "BUDGET_EXCEEDED");
    assert_eq!(v["tokens"]["status"], 400);
    assert_eq!(v["tokens"]["error"], "UNIT_MISMATCH");
    assert_eq!(
        v["tokens"]["details"]["expected_units"],
        json!(["USD_MICROCENTS"])
    );
    assert_eq!(v["unknown_field"]["status"], 400);
    assert_eq!(v["unknown_field"]["error"], "INVALID_REQUEST");
    // A toolset is a run scope under the subject, limited by run_budget_usd ($0.05).
    assert_eq!(
        v["toolset"]["affected_scopes"],
        json!(["acme", "acme/research/a1/run:search"])
    );
    assert_eq!(v["toolset_over"]["error"], "BUDGET_EXCEEDED");
    // Scopes outside the key's subtree are refused.
    for f in ["sibling", "tenant_only", "other_tenant", "balances_sibling"] {
        assert_eq!(v[f]["status"], 403, "{f}: {}", v[f]);
        assert_eq!(v[f]["error"], "FORBIDDEN", "{f}");
    }
    // Balances: 25M spent, nothing held.
    let b = v["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["scope"] == "acme")
        .cloned()
        .unwrap_or_else(|| panic!("no acme balance in {}", v["balances"]));
    assert_eq!(b["allocated"]["amount"], USD);
    assert_eq!(b["spent"]["amount"], 25_000_000);
    assert_eq!(b["reserved"]["amount"], 0);
    assert_eq!(b["remaining"]["amount"], USD - 25_000_000);
    // Events: 201, idempotent, REJECT refuses what does not fit, the default takes what
    // is left and says so.
    assert_eq!(v["event"][0], 201);
    assert_eq!(v["event"][1]["status"], "APPLIED");
    assert_eq!(v["event"][1]["charged"]["amount"], 5_000_000);
    assert_eq!(v["event_replay"]["event_id"], v["event"][1]["event_id"]);
    assert_eq!(v["event_reject"]["status"], 409);
    assert_eq!(v["event_reject"]["error"], "BUDGET_EXCEEDED");
    assert_eq!(v["event_capped"]["charged"]["amount"], 70_000_000);
    assert_eq!(v["exhausted"]["decision"], "DENY");
    assert_eq!(v["unauthorized"]["status"], 401);
    assert_eq!(v["unauthorized"]["error"], "UNAUTHORIZED");

    // The ledger: exactly the dollar spent, nothing held, never more.
    let acme = tg.budget("acme").await;
    assert_eq!(acme.spent, USD * NANOS, "{acme:?}");
    assert_eq!(acme.reserved, 0, "{acme:?}");

    // Audited and counted like every other endpoint, with the endpoint `cycles`.
    let audit = tg.admin().get("/admin/audit?agent=a1").await;
    let records = audit.json()["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cycles: Vec<&Value> = records
        .iter()
        .filter(|r| r["endpoint"] == "cycles")
        .collect();
    assert!(cycles.len() >= 20, "{} cycles records", cycles.len());
    assert!(cycles.iter().any(|r| {
        r["decision"] == "deny"
            && r["reasons"]
                .as_array()
                .unwrap()
                .contains(&json!("budget_exceeded"))
    }));
    assert!(
        cycles.iter().any(|r| r["actual_usd"] == json!(0.25)),
        "{cycles:?}"
    );
    let metrics = harness::Client::new(tg.admin_url(), None)
        .get("/metrics")
        .await
        .text();
    assert!(metrics.contains("endpoint=\"cycles\""), "no cycles series");
    assert!(
        !tg.logs().contains(&tg.key("a1")),
        "the key leaked into the log"
    );
}

#[tokio::test]
async fn the_decorator_and_late_commits_follow_the_protocol() {
    let tg = spawn("").await;
    let v = run(
        &tg,
        &tg.key("a1"),
        r#"
calls = []
@cycles(estimate=40_000_000, actual=lambda r: r, action_kind="tool.search", action_name="web",
        tenant="acme", workspace="research", agent="a1", client=client)
def search(cost):
    calls.append(cost)
    return cost
out["first"] = search(20_000_000)
search(30_000_000)
search(40_000_000)
try:
    search(1)   # 90M spent: a 40M hold does not fit
    out["third"] = "ran"
except BudgetExceededError as e:
    out["third"] = {"error": e.error_code, "status": e.status}
out["calls"] = len(calls)

# Past its TTL and grace, a reservation cannot be committed or extended (410).
base = {"subject": sub(agent="a1"), "action": {"kind": "k", "name": "n"}, "estimate": usd(1_000_000)}
short = ok(client.create_reservation({**base, "idempotency_key": "s1", "ttl_ms": 1000, "grace_period_ms": 0}))
deadline = time.time() + 20
while True:
    got = client.get_reservation(short["reservation_id"])
    if got.status == 410 or time.time() > deadline:
        break
    time.sleep(0.05)
out["expired_get"] = err(got)
out["late_commit"] = err(client.commit_reservation(short["reservation_id"], {"idempotency_key": "lc", "actual": usd(1_000_000)}))
out["late_extend"] = err(client.extend_reservation(short["reservation_id"], {"idempotency_key": "le", "extend_by_ms": 1000}))
# Within its grace period it still can be committed.
graced = ok(client.create_reservation({**base, "idempotency_key": "s2", "ttl_ms": 1000, "grace_period_ms": 60000}))
while time.time() * 1000 <= graced["expires_at_ms"] + 100:
    time.sleep(0.05)
out["grace_commit"] = ok(client.commit_reservation(graced["reservation_id"], {"idempotency_key": "gc", "actual": usd(1_000_000)}))
# REJECT refuses a commit above the hold and leaves it active; the default charges what is left.
rej = ok(client.create_reservation({**base, "idempotency_key": "s3", "overage_policy": "REJECT"}))
out["reject"] = err(client.commit_reservation(rej["reservation_id"], {"idempotency_key": "rc", "actual": usd(2_000_000)}))
out["reject_then"] = ok(client.commit_reservation(rej["reservation_id"], {"idempotency_key": "rc2", "actual": usd(1_000_000)}))
over = ok(client.create_reservation({**base, "idempotency_key": "s4"}))
out["overage"] = ok(client.commit_reservation(over["reservation_id"], {"idempotency_key": "oc", "actual": usd(3_000_000)}))
# 95M spent, 1M held: the path has 4M more to give, not 9M.
capped = ok(client.create_reservation({**base, "idempotency_key": "s5", "overage_policy": "ALLOW_WITH_OVERDRAFT"}))
out["overage_capped"] = ok(client.commit_reservation(capped["reservation_id"], {"idempotency_key": "oc2", "actual": usd(10_000_000)}))
"#,
    )
    .await;
    assert_eq!(v["first"], 20_000_000, "{v}");
    assert_eq!(v["third"]["error"], "BUDGET_EXCEEDED", "{v}");
    assert_eq!(v["third"]["status"], 409);
    assert_eq!(
        v["calls"], 3,
        "a refused reservation never runs the function"
    );
    assert_eq!(v["expired_get"]["status"], 410, "{v}");
    assert_eq!(v["expired_get"]["error"], "RESERVATION_EXPIRED");
    assert_eq!(v["late_commit"]["status"], 410);
    assert_eq!(v["late_commit"]["error"], "RESERVATION_EXPIRED");
    assert_eq!(v["late_extend"]["error"], "RESERVATION_EXPIRED");
    assert_eq!(v["grace_commit"]["status"], "COMMITTED");
    assert_eq!(v["reject"]["error"], "BUDGET_EXCEEDED");
    assert_eq!(v["reject_then"]["charged"]["amount"], 1_000_000);
    assert_eq!(v["overage"]["charged"]["amount"], 3_000_000);
    assert_eq!(v["overage_capped"]["charged"]["amount"], 5_000_000);
    // 20M + 30M + 40M (decorated), 1M within grace, 1M after the refused overage, 3M
    // with an overage, 5M of 10M reported: exactly the dollar.
    let acme = tg
        .wait_for_budget("acme", std::time::Duration::from_secs(15), |b| {
            b.reserved == 0
        })
        .await;
    assert_eq!(acme.spent, USD * NANOS, "{acme:?}");
    let records = tg.admin().get("/admin/audit?agent=a1").await.json()["records"].clone();
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["stage"] == "commit"
                && r["reasons"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("overage_capped"))),
        "{records}"
    );
}

#[tokio::test]
async fn concurrent_reservations_stop_exactly_at_the_limit() {
    let tg = spawn("").await;
    let v = run(
        &tg,
        &tg.key("a1"),
        r#"
def reserve(i):
    return client.create_reservation({"idempotency_key": f"c{i}", "subject": sub(agent="a1"),
        "action": {"kind": "k", "name": "n"}, "estimate": usd(7_000_000)})
with ThreadPoolExecutor(max_workers=20) as pool:
    results = list(pool.map(reserve, range(20)))
out["ok"] = sum(1 for r in results if r.is_success)
out["refused"] = sorted(set((r.status, (r.body or {}).get("error")) for r in results if not r.is_success))
"#,
    )
    .await;
    // $1 holds 14 reservations of $0.07 ($0.98), never 15.
    assert_eq!(v["ok"], 14, "{v}");
    assert_eq!(v["refused"], json!([[409, "BUDGET_EXCEEDED"]]));
    let acme = tg.budget("acme").await;
    assert_eq!(acme.reserved, 14 * 7_000_000 * NANOS, "{acme:?}");
}

/// An LLM request through the proxy and Cycles reservations race for the last dollar:
/// whoever comes first holds, the others get what is left or nothing, and the dollar is
/// never overspent.
#[tokio::test]
async fn llm_calls_and_cycles_reservations_share_the_last_dollar() {
    let mock = mock::provider().api_key("sk-provider").spawn().await;
    let tg = harness::tollgate()
        .env("MOCK_KEY", "sk-provider")
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", api_key_env: MOCK_KEY, models: ["*"] }}]
pricing:
  overrides:
    mock-chat: {{ input_per_mtok: 1.0, output_per_mtok: 6000.0, max_output_tokens: 100 }}
scopes: {{ acme: {{ budget: {{ limit_usd: 1.00, period: total }} }} }}
policies: {{ p: {{ models: {{ allow: ["mock-chat"] }}, caps: {{ min_output_tokens: 64 }} }} }}
agents: {{ a1: {{ scope: acme/research/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    let v = run(
        &tg,
        &tg.key("a1"),
        r#"
import openai
# Half the dollar is gone already: four claims race for the other half.
ok(client.create_event({"idempotency_key": "pre", "subject": sub(agent="a1"),
    "action": {"kind": "k", "name": "n"}, "actual": usd(50_000_000)}))
llm = openai.OpenAI(base_url=BASE + "/v1", api_key=os.environ["OPENAI_API_KEY"], max_retries=0)
start = threading.Barrier(4)
def chat(i):
    start.wait()
    try:
        r = llm.chat.completions.with_raw_response.create(model="mock-chat", max_tokens=100,
            messages=[{"role": "user", "content": "WORDS: 90"}])
        return ["llm", r.headers.get("x-tollgate-decision"), r.headers.get("x-tollgate-cost-usd")]
    except openai.APIStatusError as e:
        return ["llm", e.status_code]
def hold(i):
    start.wait()
    r = client.create_reservation({"idempotency_key": f"h{i}", "subject": sub(agent="a1"),
        "action": {"kind": "k", "name": "n"}, "estimate": usd(40_000_000)})
    if r.is_success:
        ok(client.commit_reservation(r.body["reservation_id"], {"idempotency_key": f"c{i}", "actual": usd(40_000_000)}))
        return ["cycles", "ALLOW", "0.4"]
    return ["cycles", r.status]
with ThreadPoolExecutor(max_workers=4) as pool:
    out["results"] = list(pool.map(lambda f: f[0](f[1]), [(chat, 0), (chat, 1), (hold, 2), (hold, 3)]))
"#,
    )
    .await;
    let results = v["results"].as_array().unwrap();
    // Four claims on the last $0.50, each needing at least $0.384 (an LLM call's 64-token
    // minimum at $0.006 a token) or $0.40 (a Cycles hold): whatever the order, exactly one
    // gets through, and what it leaves is too little for any other.
    let granted =
        |r: &&Value| ["ALLOW", "allow", "allow_with_caps"].contains(&r[1].as_str().unwrap_or(""));
    let winners: Vec<&Value> = results.iter().filter(granted).collect();
    assert_eq!(winners.len(), 1, "{v}");
    let cost = harness::usd_to_nanos(winners[0][2].as_str().expect("a cost"));
    let acme = tg
        .wait_for_budget("acme", std::time::Duration::from_secs(10), |b| {
            b.reserved == 0
        })
        .await;
    assert!(acme.spent <= USD * NANOS, "overspent: {acme:?} {v}");
    // The ledger holds exactly the first half and the winner's cost.
    assert_eq!(acme.spent, 50_000_000 * NANOS + cost, "{acme:?} {v}");
}

/// Two tollgate processes on one Redis: Cycles reservations sent to either compete for
/// the same dollar, and a key retried on the other instance holds nothing twice.
#[tokio::test]
async fn two_instances_on_one_redis_share_the_ledger() {
    let prefix = harness::SharedPrefix::new();
    let yaml = r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 1.00, period: total } } }
policies: { p: {} }
agents: { a1: { scope: acme/research/a1, policy: p } }
"#;
    let one = harness::tollgate()
        .redis(prefix.as_str())
        .config(yaml)
        .spawn()
        .await;
    let two = harness::tollgate()
        .redis(prefix.as_str())
        .config(yaml)
        .spawn()
        .await;
    let second = two.base_url().trim_end_matches("/v1").to_string();
    let v = run(
        &one,
        &one.key("a1"),
        &format!(
            r#"
other = CyclesClient(CyclesConfig(base_url="{second}", api_key=os.environ["OPENAI_API_KEY"], retry_enabled=False))
def reserve(i):
    c = client if i % 2 == 0 else other
    return c.create_reservation({{"idempotency_key": f"k{{i}}", "subject": sub(agent="a1"),
        "action": {{"kind": "k", "name": "n"}}, "estimate": usd(7_000_000)}})
with ThreadPoolExecutor(max_workers=20) as pool:
    results = list(pool.map(reserve, range(20)))
out["ok"] = sum(1 for r in results if r.is_success)
first = next(r for i, r in enumerate(results) if r.is_success and i % 2 == 0)
key = next(f"k{{i}}" for i, r in enumerate(results) if r is first)
# The same key on the other instance: the ledger answers the same reservation.
again = other.create_reservation({{"idempotency_key": key, "subject": sub(agent="a1"),
    "action": {{"kind": "k", "name": "n"}}, "estimate": usd(7_000_000)}})
out["same"] = ok(again)["reservation_id"] == first.body["reservation_id"]
"#
        ),
    )
    .await;
    assert_eq!(v["ok"], 14, "{v}");
    assert_eq!(v["same"], true, "{v}");
    let acme = one.budget("acme").await;
    assert_eq!(acme.reserved, 14 * 7_000_000 * NANOS, "{acme:?}");
}

/// Two tollgate processes on one Redis: what the protocol remembers beyond the money
/// (records and answers) is in the store, so a reservation made on one instance is read,
/// listed, extended and committed on the other, a replay there repeats the first answer,
/// and settlements and extends racing on both instances end the way one instance would.
#[tokio::test]
async fn a_reservation_made_on_one_instance_is_served_by_the_other() {
    let prefix = harness::SharedPrefix::new();
    let yaml = r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 1.00, period: total } } }
policies: { p: {} }
agents: { a1: { scope: acme/research/a1, policy: p }, a2: { scope: acme/research/a2, policy: p } }
"#;
    let one = harness::tollgate()
        .redis(prefix.as_str())
        .config(yaml)
        .spawn()
        .await;
    let two = harness::tollgate()
        .redis(prefix.as_str())
        .config(yaml)
        .spawn()
        .await;
    let second = two.base_url().trim_end_matches("/v1").to_string();
    let a2 = one.key("a2");
    let v = run(
        &one,
        &one.key("a1"),
        &format!(
            r#"
other = CyclesClient(CyclesConfig(base_url="{second}", api_key=os.environ["OPENAI_API_KEY"], retry_enabled=False))
act = {{"kind": "tool.search", "name": "web"}}
req = {{"idempotency_key": "x1", "subject": sub(agent="a1"), "action": act,
       "estimate": usd(30_000_000), "ttl_ms": 60000, "metadata": {{"run": "r-7"}}}}
made = ok(client.create_reservation(req))
out["made"] = made
rid = made["reservation_id"]
out["get"] = ok(other.get_reservation(rid))
# More reservations, alternating instances; the list on either is the same, page by page.
ids = [rid]
for i in range(4):
    c = other if i % 2 == 0 else client
    ids.append(ok(c.create_reservation({{**req, "idempotency_key": f"m{{i}}", "estimate": usd(1_000_000)}}))["reservation_id"])
out["made_ids"] = ids
pages, cursor = [], None
while True:
    params = {{"limit": "2"}}
    if cursor:
        params["cursor"] = cursor
    page = ok(other.list_reservations(**params))
    pages.append([r["reservation_id"] for r in page["reservations"]])
    cursor = page.get("next_cursor")
    if not page["has_more"] or len(pages) > 5:
        break
out["pages"] = pages
out["listed_on_one"] = [r["reservation_id"] for r in ok(client.list_reservations(limit="50"))["reservations"]]
out["by_key"] = [r["reservation_id"] for r in ok(other.list_reservations(idempotency_key="x1"))["reservations"]]
out["extend"] = ok(other.extend_reservation(rid, {{"idempotency_key": "e1", "extend_by_ms": 10000}}))
out["get_after_extend"] = ok(client.get_reservation(rid))
commit = {{"idempotency_key": "c1", "actual": usd(20_000_000), "metadata": {{"rows": 3}}}}
out["commit"] = ok(other.commit_reservation(rid, commit))
out["commit_replay_on_one"] = ok(client.commit_reservation(rid, commit))
out["commit_again_on_one"] = err(client.commit_reservation(rid, {{**commit, "idempotency_key": "c2"}}))
out["get_after_commit"] = ok(client.get_reservation(rid))
out["replay"] = ok(other.create_reservation(req))
out["mismatch"] = err(other.create_reservation({{**req, "estimate": usd(1)}}))
out["committed_list"] = [r["reservation_id"] for r in ok(other.list_reservations(status="COMMITTED"))["reservations"]]
out["steal"] = err(CyclesClient(CyclesConfig(base_url="{second}", api_key="{a2}", retry_enabled=False)).get_reservation(rid))

# A commit on one and a release on the other at once: exactly one wins, and the record
# says which.
def race(pair):
    start = threading.Barrier(2)
    def go(f):
        start.wait()
        return f()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(go, pair))
races = []
for i in range(3):
    r = ok(client.create_reservation({{**req, "idempotency_key": f"race{{i}}", "estimate": usd(1_000_000)}}))["reservation_id"]
    a, b = race([lambda: client.commit_reservation(r, {{"idempotency_key": "rc", "actual": usd(1_000_000)}}),
                 lambda: other.release_reservation(r, {{"idempotency_key": "rr"}})])
    races.append({{"commit": a.status, "release": b.status,
                  "errors": sorted(x.body.get("error") for x in (a, b) if not x.is_success),
                  "status": ok(other.get_reservation(r))["status"]}})
out["races"] = races
# Two commits above the hold at once, one per instance: one charges the overage, the
# other is refused and leaves the winner's overage alone.
overages = []
for i in range(3):
    r = ok(client.create_reservation({{**req, "idempotency_key": f"ov{{i}}", "estimate": usd(1_000_000)}}))["reservation_id"]
    a, b = race([lambda: client.commit_reservation(r, {{"idempotency_key": "oa", "actual": usd(2_000_000)}}),
                 lambda: other.commit_reservation(r, {{"idempotency_key": "ob", "actual": usd(2_000_000)}})])
    overages.append({{"statuses": sorted([a.status, b.status]),
                     "charged": [x.body["charged"]["amount"] for x in (a, b) if x.is_success],
                     "errors": [x.body.get("error") for x in (a, b) if not x.is_success],
                     "record": ok(client.get_reservation(r))}})
out["overages"] = overages
# Two extends at once, one per instance: both count.
r = ok(other.create_reservation({{**req, "idempotency_key": "ext", "estimate": usd(1_000_000)}}))
a, b = race([lambda: client.extend_reservation(r["reservation_id"], {{"idempotency_key": "ea", "extend_by_ms": 5000}}),
             lambda: other.extend_reservation(r["reservation_id"], {{"idempotency_key": "eb", "extend_by_ms": 5000}})])
out["extends"] = sorted([ok(a)["expires_at_ms"], ok(b)["expires_at_ms"]])
out["ext_base"] = r["expires_at_ms"]
out["ext_final"] = ok(client.get_reservation(r["reservation_id"]))["expires_at_ms"]
ok(client.release_reservation(r["reservation_id"], {{"idempotency_key": "er"}}))
for rid_ in ids[1:]:
    ok(other.release_reservation(rid_, {{"idempotency_key": "cleanup"}}))
"#
        ),
    )
    .await;
    let made = &v["made"];
    let rid = made["reservation_id"].as_str().unwrap();
    // Read on the other instance: the whole record, metadata included.
    let got = &v["get"];
    assert_eq!(got["status"], "ACTIVE", "{v}");
    assert_eq!(got["subject"]["agent"], "a1");
    assert_eq!(got["action"]["name"], "web");
    assert_eq!(got["metadata"], json!({"run": "r-7"}));
    assert_eq!(got["expires_at_ms"], made["expires_at_ms"]);
    assert_eq!(got["reserved"]["amount"], 30_000_000);
    // Listed on either instance, newest first, the pages adding up to every reservation.
    let made_ids: Vec<Value> = v["made_ids"].as_array().unwrap().clone();
    let paged: Vec<Value> = v["pages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p.as_array().unwrap().clone())
        .collect();
    let newest_first: Vec<Value> = made_ids.iter().rev().cloned().collect();
    assert_eq!(paged, newest_first, "{v}");
    assert!(v["pages"].as_array().unwrap().len() >= 3, "{v}");
    assert!(v["pages"][0].as_array().unwrap().len() == 2);
    let listed_on_one: Vec<Value> = v["listed_on_one"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|id| made_ids.contains(id))
        .cloned()
        .collect();
    assert_eq!(listed_on_one, newest_first);
    assert_eq!(v["by_key"], json!([rid]));
    // Extended on the other instance from the first instance's expiry; seen on the first.
    let expires = made["expires_at_ms"].as_i64().unwrap();
    assert_eq!(v["extend"]["expires_at_ms"], expires + 10_000);
    assert_eq!(v["get_after_extend"]["expires_at_ms"], expires + 10_000);
    // Committed on the other instance; the first replays that answer and knows it is done.
    assert_eq!(v["commit"]["charged"]["amount"], 20_000_000);
    assert_eq!(v["commit"]["released"]["amount"], 10_000_000);
    assert_eq!(v["commit_replay_on_one"], v["commit"]);
    assert_eq!(v["commit_again_on_one"]["error"], "RESERVATION_FINALIZED");
    assert_eq!(v["get_after_commit"]["status"], "COMMITTED");
    assert_eq!(v["get_after_commit"]["committed"]["amount"], 20_000_000);
    assert!(v["get_after_commit"]["finalized_at_ms"].is_i64());
    assert_eq!(
        v["get_after_commit"]["committed_metadata"],
        json!({"rows": 3})
    );
    // The reserve replayed on the other instance is the first instance's answer (its
    // expiry, before the extend), with no time left now that it is committed.
    assert_eq!(v["replay"]["reservation_id"], rid);
    assert_eq!(v["replay"]["expires_at_ms"], expires);
    assert_eq!(v["replay"]["remaining_ttl_ms"], 0);
    assert_eq!(v["mismatch"]["status"], 409);
    assert_eq!(v["mismatch"]["error"], "IDEMPOTENCY_MISMATCH");
    assert_eq!(v["committed_list"], json!([rid]));
    assert_eq!(v["steal"]["status"], 403);
    assert_eq!(v["steal"]["error"], "FORBIDDEN");
    for race in v["races"].as_array().unwrap() {
        let won = [&race["commit"], &race["release"]]
            .iter()
            .filter(|s| **s == 200)
            .count();
        assert_eq!(won, 1, "{race}");
        assert_eq!(race["errors"], json!(["RESERVATION_FINALIZED"]), "{race}");
        let winner = if race["commit"] == 200 {
            "COMMITTED"
        } else {
            "RELEASED"
        };
        assert_eq!(race["status"], winner, "{race}");
    }
    for o in v["overages"].as_array().unwrap() {
        assert_eq!(o["statuses"], json!([200, 409]), "{o}");
        assert_eq!(o["charged"], json!([2_000_000]), "{o}");
        assert_eq!(o["errors"], json!(["RESERVATION_FINALIZED"]), "{o}");
        assert_eq!(o["record"]["status"], "COMMITTED", "{o}");
        assert_eq!(o["record"]["committed"]["amount"], 2_000_000, "{o}");
    }
    let base = v["ext_base"].as_i64().unwrap();
    assert_eq!(v["extends"], json!([base + 5_000, base + 10_000]), "{v}");
    assert_eq!(v["ext_final"], base + 10_000);
    // The ledger: the commit, the races' commits and the overage commits, nothing held.
    let committed = v["races"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["commit"] == 200)
        .count() as i64;
    let acme = one.budget("acme").await;
    assert_eq!(
        acme.spent,
        (20_000_000 + committed * 1_000_000 + 3 * 2_000_000) * NANOS,
        "{acme:?}"
    );
    assert_eq!(acme.reserved, 0, "{acme:?}");
}

/// The embedded store keeps records and answers on disk: after a `kill -9` the restarted
/// process still shows, replays and settles a reservation made before.
#[tokio::test]
async fn a_restart_forgets_no_reservation() {
    let mut tg = spawn("").await;
    let first = run(
        &tg,
        &tg.key("a1"),
        r#"
req = {"idempotency_key": "k1", "subject": sub(agent="a1"), "action": {"kind": "k", "name": "n"},
       "estimate": usd(5_000_000)}
out["made"] = ok(client.create_reservation(req))
"#,
    )
    .await;
    tg.restart().await;
    let rid = first["made"]["reservation_id"].as_str().unwrap();
    let v = run(
        &tg,
        &tg.key("a1"),
        &format!(
            r#"
req = {{"idempotency_key": "k1", "subject": sub(agent="a1"), "action": {{"kind": "k", "name": "n"}},
       "estimate": usd(5_000_000)}}
out["get"] = ok(client.get_reservation("{rid}"))
out["replay"] = ok(client.create_reservation(req))
out["list"] = [r["reservation_id"] for r in ok(client.list_reservations())["reservations"]]
out["extend"] = ok(client.extend_reservation("{rid}", {{"idempotency_key": "e", "extend_by_ms": 1000}}))
out["commit"] = ok(client.commit_reservation("{rid}", {{"idempotency_key": "c", "actual": usd(2_000_000)}}))
"#
        ),
    )
    .await;
    assert_eq!(v["get"]["status"], "ACTIVE", "{v}");
    assert_eq!(v["replay"]["reservation_id"], rid);
    assert_eq!(v["replay"]["expires_at_ms"], first["made"]["expires_at_ms"]);
    assert_eq!(v["list"], json!([rid]));
    assert_eq!(
        v["extend"]["expires_at_ms"],
        first["made"]["expires_at_ms"].as_i64().unwrap() + 1_000
    );
    assert_eq!(v["commit"]["charged"]["amount"], 2_000_000);
    let acme = tg.budget("acme").await;
    assert_eq!((acme.spent, acme.reserved), (2_000_000 * NANOS, 0));
}

/// Refusals before any money moves keep the protocol's shape and headers: no key, a wrong
/// method, a policy that turns the decision API off, a rate limit.
#[tokio::test]
async fn refusals_keep_the_protocol_shape() {
    let tg = spawn("").await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let decide = json!({"idempotency_key": "d", "subject": {"tenant": "acme", "workspace": "research", "agent": "a1"},
        "action": {"kind": "k", "name": "n"}, "estimate": {"unit": "USD_MICROCENTS", "amount": 1}});
    let anonymous = tg
        .client_with_key(None)
        .post_raw(
            "/v1/decide",
            decide.to_string().into_bytes(),
            &[("traceparent", &format!("00-{trace}-b7ad6b7169203331-01"))],
        )
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let body = anonymous.json();
    assert_eq!(body["error"], "UNAUTHORIZED");
    assert_eq!(body["trace_id"], trace);
    assert_eq!(anonymous.header("x-cycles-trace-id"), Some(trace));
    assert_eq!(
        anonymous.header("x-request-id"),
        body["request_id"].as_str()
    );
    let wrong = tg.client("a1").delete("/v1/reservations").await;
    assert_eq!(wrong.status, 405, "{}", wrong.text());
    assert_eq!(wrong.json()["error"], "INVALID_REQUEST");
    let missing = tg
        .client("a1")
        .get("/v1/reservations/rsv_a1_000000000000000000000000")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "NOT_FOUND");
    let no_filter = tg.client("a1").get("/v1/balances").await;
    assert_eq!(no_filter.status, 400);
    assert_eq!(no_filter.json()["error"], "INVALID_REQUEST");
    let bad_json = tg
        .client("a1")
        .post_raw("/v1/reservations", b"{not json".to_vec(), &[])
        .await;
    assert_eq!(bad_json.status, 400);
    assert_eq!(bad_json.json()["error"], "INVALID_REQUEST");

    let off = harness::tollgate()
        .config(
            r#"
providers: [{ name: none, kind: openai, base_url: "http://127.0.0.1:9/v1", models: ["*"] }]
scopes: { acme: { budget: { limit_usd: 1.00, period: total } } }
policies: { off: { decision_api: false }, slow: { rate: { rpm: 1 } } }
agents: { a1: { scope: acme/research/a1, policy: off }, a2: { scope: acme/research/a2, policy: slow } }
"#,
        )
        .spawn()
        .await;
    let refused = off.client("a1").post("/v1/decide", &decide).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["error"], "FORBIDDEN");
    let mut d2 = decide.clone();
    d2["subject"]["agent"] = json!("a2");
    let first = off.client("a2").post("/v1/decide", &d2).await;
    assert_eq!(first.status, 200, "{}", first.text());
    d2["idempotency_key"] = json!("d2");
    let limited = off.client("a2").post("/v1/decide", &d2).await;
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert_eq!(limited.json()["error"], "LIMIT_EXCEEDED");
    assert!(limited.header("retry-after").is_some());
    assert!(limited.header("x-ratelimit-reset").is_some());
}
