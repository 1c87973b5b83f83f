//! Reading the Grafana dashboards: every panel's PromQL and every template variable's
//! `label_values()` query, structural mistakes, and the variables filled in as Grafana would.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::prometheus::dashboards_dir;

/// What Grafana's own variables become: windows long enough for the test's whole history.
const GRAFANA_VARS: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "1s"),
    ("__range", "5m"),
];

/// One PromQL expression a dashboard asks Grafana to run.
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
}

/// A dashboard template variable defined by a `label_values(selector, label)` query.
pub struct VariableQuery {
    pub dashboard: String,
    pub name: String,
    pub selector: String,
    pub label: String,
}

#[derive(Default)]
pub struct Dashboards {
    pub panels: Vec<PanelQuery>,
    pub variables: Vec<VariableQuery>,
    /// Structural mistakes Grafana would load silently but show broken.
    pub problems: Vec<String>,
}

fn is_datasource_var(ds: &Value) -> bool {
    ds["type"] == "prometheus" && ds["uid"] == "${datasource}"
}

pub fn load_dashboards() -> Dashboards {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected the five dashboards: {files:?}");
    let mut out = Dashboards::default();
    let mut uids = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).expect("dashboard file");
        let dash: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
        let uid = dash["uid"].as_str().unwrap_or_default().to_string();
        if uid.is_empty() || uids.contains(&uid) {
            out.problems
                .push(format!("{name}: missing or duplicate uid {uid:?}"));
        }
        uids.push(uid);
        if dash["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
            out.problems
                .push(format!("{name}: schemaVersion below 36 (Grafana 9)"));
        }
        read_variables(&name, &dash, &mut out);
        let mut ids = Vec::new();
        read_panels(
            &name,
            dash["panels"].as_array().unwrap_or(&Vec::new()),
            &mut ids,
            &mut out,
        );
    }
    check_provisioning(&mut out.problems);
    out
}

fn yaml(path: &Path) -> serde_norway::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The provisioning files point Grafana at a Prometheus and at this directory's JSON files.
fn check_provisioning(problems: &mut Vec<String>) {
    let dir = dashboards_dir().join("provisioning");
    let ds = yaml(&dir.join("datasources/tollgate-prometheus.yml"));
    let source = &ds["datasources"][0];
    if ds["apiVersion"] != 1 || source["type"] != "prometheus" || source["url"] != "$PROMETHEUS_URL"
    {
        problems.push(format!("datasource provisioning: {source:?}"));
    }
    let dash = yaml(&dir.join("dashboards/tollgate.yml"));
    let provider = &dash["providers"][0];
    if dash["apiVersion"] != 1
        || provider["type"] != "file"
        || provider["options"]["path"] != "$TOLLGATE_DASHBOARDS"
    {
        problems.push(format!("dashboard provisioning: {provider:?}"));
    }
}

fn read_variables(name: &str, dash: &Value, out: &mut Dashboards) {
    let vars = dash["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !vars.iter().any(|v| {
        v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
    }) {
        out.problems.push(format!(
            "{name}: no `datasource` variable of type prometheus"
        ));
    }
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let var = v["name"].as_str().unwrap_or_default().to_string();
        if !is_datasource_var(&v["datasource"]) {
            out.problems.push(format!(
                "{name}: variable {var} does not use ${{datasource}}"
            ));
        }
        let query = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_default();
        let parsed = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','));
        match parsed {
            Some((selector, label)) => out.variables.push(VariableQuery {
                dashboard: name.to_string(),
                name: var,
                selector: selector.trim().to_string(),
                label: label.trim().to_string(),
            }),
            None => out.problems.push(format!(
                "{name}: variable {var}: not a label_values() query: {query:?}"
            )),
        }
    }
}

fn read_panels(name: &str, panels: &[Value], ids: &mut Vec<u64>, out: &mut Dashboards) {
    for p in panels {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        match p["id"].as_u64() {
            Some(id) if !ids.contains(&id) => ids.push(id),
            id => out.problems.push(format!(
                "{name}: panel {title:?}: missing or duplicate id {id:?}"
            )),
        }
        if p["gridPos"]["w"].as_u64().is_none() || p["gridPos"]["h"].as_u64().is_none() {
            out.problems
                .push(format!("{name}: panel {title:?}: no gridPos"));
        }
        // Collapsed rows carry their panels inside.
        if let Some(inner) = p["panels"].as_array() {
            read_panels(name, inner, ids, out);
        }
        if p["type"] == "row" {
            continue;
        }
        if !is_datasource_var(&p["datasource"]) {
            out.problems.push(format!(
                "{name}: panel {title:?} does not use ${{datasource}}"
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            out.problems
                .push(format!("{name}: panel {title:?} has no query"));
        }
        for t in targets {
            let ref_id = t["refId"].as_str().unwrap_or("?").to_string();
            match t["expr"].as_str() {
                Some(expr) if !expr.trim().is_empty() => out.panels.push(PanelQuery {
                    dashboard: name.to_string(),
                    panel: title.clone(),
                    ref_id,
                    expr: expr.to_string(),
                }),
                _ => out
                    .problems
                    .push(format!("{name}: panel {title:?} ({ref_id}): empty expr")),
            }
        }
    }
}

/// Fills in Grafana's variables and the dashboards' own ones (every value: `.*`); a `$` left
/// over is a variable nobody defines.
pub fn substitute(expr: &str) -> Result<String, String> {
    let mut out = expr.to_string();
    for (name, value) in GRAFANA_VARS {
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    for name in [
        "tenant", "agent", "model", "policy", "scope", "endpoint", "provider", "job", "server",
    ] {
        out = out
            .replace(&format!("${{{name}}}"), ".*")
            .replace(&format!("${name}"), ".*");
    }
    if out.contains('$') {
        return Err(format!("unknown variable in {expr}"));
    }
    Ok(out)
}
