//! Runs Python snippets with the official `openai` SDK from the repo's `.venv`
//! (created by `scripts/setup.sh --test`).

use std::path::PathBuf;
use std::process::Output;

pub fn venv_python() -> PathBuf {
    super::workspace().join(".venv/bin/python")
}

/// Runs `code` with `OPENAI_BASE_URL` and `OPENAI_API_KEY` set. Async, so a mock provider
/// on the test's own runtime keeps answering while the script runs.
pub async fn python(code: &str, base_url: &str, key: &str) -> Output {
    let py = venv_python();
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh --test to install the openai SDK",
        py.display()
    );
    tokio::process::Command::new(py)
        .arg("-c")
        .arg(code)
        .env("OPENAI_BASE_URL", base_url)
        .env("OPENAI_API_KEY", key)
        .env("OPENAI_MAX_RETRIES", "0")
        .output()
        .await
        .expect("run python")
}
