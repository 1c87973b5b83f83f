//! A private Prometheus for the dashboards test: installed when missing, started from
//! `dashboards/prometheus.yml` on a random port, queried through its HTTP API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_tests::harness::{self, free_port};

pub fn dashboards_dir() -> PathBuf {
    harness::workspace().join("dashboards")
}

fn runs(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs the Debian package when Prometheus is missing and we are root; otherwise says
/// how to get it.
pub fn require_prometheus() {
    if runs("prometheus") && runs("promtool") {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "prometheus and promtool are needed: run `scripts/setup.sh --test` or `sudo apt-get install prometheus`"
    );
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "prometheus",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        assert!(install(), "`apt-get install prometheus` failed");
    }
    assert!(
        runs("prometheus") && runs("promtool"),
        "prometheus was installed but does not run"
    );
}

/// A `prometheus` process of this test's own, on a random port with its data in a temp dir;
/// killed and removed when dropped.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus from `dashboards/prometheus.yml`, scraping `target` every second.
    pub fn start(target: &str) -> Prometheus {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).expect("random bytes");
        let dir = std::env::temp_dir().join(format!("tollgate-prom-{}", hex::encode(rnd)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config(target)).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .query(params)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("prometheus unreachable: {e}"))?;
        let body: Value = resp.json().await.map_err(|e| format!("not JSON: {e}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query: the result's series (a scalar or string counts as one), or
    /// Prometheus' error.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await?;
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                Ok(data["result"].as_array().cloned().unwrap_or_default())
            }
            _ => Ok(vec![data["result"].clone()]),
        }
    }

    /// Polls `expr` until it returns a series, for at most `within`.
    pub async fn wait_for(&mut self, what: &str, expr: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("prometheus exited with {status}:\n{}", self.logs());
            }
            if let Ok(series) = self.query(expr).await
                && !series.is_empty()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{expr}` returned nothing within {within:?}\nprometheus log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `dashboards/prometheus.yml` with 1s intervals, the test's target and absolute rule paths.
fn scrape_config(target: &str) -> String {
    let path = dashboards_dir().join("prometheus.yml");
    let text = std::fs::read_to_string(&path).expect("dashboards/prometheus.yml");
    let mut config: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    for (key, value) in [
        ("scrape_interval", "1s"),
        ("scrape_timeout", "1s"),
        ("evaluation_interval", "1s"),
    ] {
        config["global"][key] = value.into();
    }
    let rules: Vec<serde_norway::Value> = config["rule_files"]
        .as_sequence()
        .expect("rule_files")
        .iter()
        .map(|f| {
            let f = f.as_str().expect("rule file path");
            dashboards_dir().join(f).display().to_string().into()
        })
        .collect();
    config["rule_files"] = rules.into();
    let job = &mut config["scrape_configs"][0];
    assert_eq!(
        job["job_name"], "tollgate",
        "the alert rules expect job=\"tollgate\""
    );
    job["static_configs"][0]["targets"] = vec![serde_norway::Value::from(target)].into();
    serde_norway::to_string(&config).expect("YAML")
}

pub fn promtool_check_rules() {
    let rules = dashboards_dir().join("alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules {}:\n{}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `expr` of `dashboards/alerts.yml`, by alert name.
pub fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dashboards_dir().join("alerts.yml")).expect("alerts.yml");
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let mut out = Vec::new();
    for group in doc["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("rule name");
            let expr = rule["expr"].as_str().expect("rule expr");
            out.push((name.to_string(), expr.to_string()));
        }
    }
    out
}

/// Rules Prometheus failed to evaluate (health other than ok).
pub async fn unhealthy_rules(prom: &Prometheus) -> Vec<String> {
    let data = prom.api("/api/v1/rules", &[]).await.expect("rules API");
    let mut out = Vec::new();
    let mut loaded = 0;
    for group in data["groups"].as_array().cloned().unwrap_or_default() {
        for rule in group["rules"].as_array().cloned().unwrap_or_default() {
            loaded += 1;
            if rule["health"] != "ok" && rule["health"] != "unknown" {
                out.push(format!(
                    "rule {}: {} {}",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
        }
    }
    if loaded != alert_rules().len() {
        out.push(format!(
            "prometheus loaded {loaded} rules, alerts.yml has {}",
            alert_rules().len()
        ));
    }
    out
}
