//! Runs the scripts under `tests/node/` with Node.js and the official `openai` npm package
//! and MCP TypeScript SDK installed there (by `scripts/setup.sh --test`).

use std::path::PathBuf;
use std::process::Output;

/// The directory holding the scripts, `package.json` and `node_modules`.
pub fn node_dir() -> PathBuf {
    super::workspace().join("tests/node")
}

/// Runs `tests/node/<script>` with `OPENAI_BASE_URL` and `OPENAI_API_KEY` set, plus `env`.
/// Async, so a mock provider on the test's own runtime keeps answering while it runs.
pub async fn node(script: &str, base_url: &str, key: &str, env: &[(&str, &str)]) -> Output {
    let dir = node_dir();
    assert!(
        dir.join("node_modules/openai/package.json").exists(),
        "{} has no openai package: run scripts/setup.sh --test to install it",
        dir.display()
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join(script))
        .current_dir(&dir)
        .env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", key)
        // The SDK reads these too; the scripts must not depend on the caller's shell.
        .env_remove("OPENAI_ORG_ID")
        .env_remove("OPENAI_PROJECT_ID")
        .env_remove("OPENAI_ADMIN_KEY")
        .env_remove("OPENAI_CUSTOM_HEADERS")
        .env_remove("OPENAI_LOG");
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output()
        .await
        .expect("run node (is Node.js installed?)")
}
