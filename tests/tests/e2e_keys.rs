//! Agent keys issued at run time: issue, list (never secrets), rotate with a grace period
//! in which both keys work, revoke effective on the next request — through the CLI.

use serde_json::{Value, json};
use tollgate_tests::harness;
use tollgate_tests::mock;

fn cli_json(tg: &harness::Tollgate, args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let out = tg.cli(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[tokio::test]
async fn keys_are_issued_rotated_with_grace_and_revoked_from_the_next_request() {
    let mock = mock::provider().spawn().await;
    let tg = harness::tollgate()
        .config(&format!(
            r#"
providers: [{{ name: mock, kind: openai, base_url: "{}", models: ["*"] }}]
pricing: {{ overrides: {{ mock-1: {{ input_per_mtok: 1, output_per_mtok: 1 }} }} }}
policies: {{ p: {{}} }}
agents: {{ a1: {{ scope: acme/a1, policy: p }} }}
"#,
            mock.base_url()
        ))
        .spawn()
        .await;
    let status = |key: String| {
        let c = tg.client_with_key(Some(&key));
        async move {
            c.chat(json!({"model": "mock-1", "messages": [{"role": "user", "content": "SAY: ok"}]}))
                .await
                .status
        }
    };
    let issued = cli_json(&tg, &["keys", "issue", "--agent", "a1", "--label", "ci"]);
    let (id, key) = (
        issued["id"].as_str().unwrap().to_string(),
        issued["key"].as_str().unwrap().to_string(),
    );
    assert!(
        key.starts_with("tg_") && key.len() >= 46,
        "256 random bits: {key}"
    );
    assert_eq!(status(key.clone()).await, 200);

    let listed = cli_json(&tg, &["keys", "list"]);
    assert!(
        !listed.to_string().contains(&key),
        "a secret in the key list"
    );
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str() && k["status"] == "active")
    );

    // Rotation: both keys work during the grace period.
    let rotated = cli_json(&tg, &["keys", "rotate", &id, "--grace", "1h"]);
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_key, key);
    assert_eq!(
        status(key.clone()).await,
        200,
        "the old key works during the grace"
    );
    assert_eq!(status(new_key.clone()).await, 200);
    // A rotation with no grace ends the old key at once.
    let new_id = rotated["id"].as_str().unwrap().to_string();
    let again = cli_json(&tg, &["keys", "rotate", &new_id, "--grace", "0s"]);
    assert_eq!(
        status(new_key.clone()).await,
        401,
        "no grace: the rotated key stops at once"
    );
    let newest = again["key"].as_str().unwrap().to_string();
    assert_eq!(status(newest.clone()).await, 200);

    // Revocation holds from the very next request.
    cli_json(&tg, &["keys", "revoke", again["id"].as_str().unwrap()]);
    assert_eq!(status(newest).await, 401);
    let unknown = tg.cli(&["keys", "issue", "--agent", "nobody"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown agent"));
    // Without the admin token the admin API refuses.
    let anon = tg.client_with_key(None).get("/admin/keys").await;
    assert_eq!(
        anon.status, 404,
        "the admin API is not on the agent listener"
    );
    let wrong = harness::Client::new(tg.admin_url(), Some("wrong".into()))
        .get("/admin/keys")
        .await;
    assert_eq!(wrong.status, 401);
}
