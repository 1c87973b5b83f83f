//! Reading the audit trail through the admin API: filtered queries and verification.

use serde_json::{Value, json};
use tollgate_audit::{Decision, Filter};
use tollgate_config::units::parse_duration;

use super::query_param;
use crate::error::GateError;
use crate::state::State;

/// The most records one query returns.
const MAX_LIMIT: usize = 10_000;

fn filter(query: &str) -> Result<Filter, GateError> {
    let mut f = Filter::default();
    if let Some(n) = query_param(query, "tail").or_else(|| query_param(query, "limit")) {
        f.limit = n
            .parse::<usize>()
            .map_err(|_| GateError::invalid("`limit` must be a number", Some("limit")))?
            .clamp(1, MAX_LIMIT);
    }
    f.agent = query_param(query, "agent");
    f.tenant = query_param(query, "tenant");
    f.request_id = query_param(query, "request_id");
    if let Some(d) = query_param(query, "decision") {
        f.decision = Some(Decision::parse(&d).ok_or_else(|| {
            GateError::invalid(
                "`decision` must be allow, allow_with_caps, deny, shadow_deny or escalate",
                Some("decision"),
            )
        })?);
    }
    if let Some(since) = query_param(query, "since") {
        let ago = parse_duration(&since)
            .map_err(|e| GateError::invalid(format!("`since`: {e}"), Some("since")))?;
        f = f.since_ago(ago);
    }
    Ok(f)
}

/// `GET /admin/audit?agent=&decision=&since=1h&limit=`: `{"records": [...]}`, oldest first.
/// Records are written out as their own lines are, so amounts stay exact decimals.
pub async fn query(state: &State, query: &str) -> Result<String, GateError> {
    let f = filter(query)?;
    let records = state.audit.query(&f).await.map_err(|e| {
        tracing::error!(error = %e, "reading the audit trail failed");
        GateError::Internal
    })?;
    let lines: Vec<String> = records
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .collect();
    Ok(format!("{{\"records\":[{}]}}", lines.join(",")))
}

/// `GET /admin/audit/verify`: the running instance's own trail.
pub async fn verify(state: &State) -> Result<Value, GateError> {
    let report = state
        .audit
        .verify()
        .await
        .map_err(|_| GateError::Internal)?;
    Ok(json!({
        "intact": report.is_intact(),
        "lines": report.lines,
        "report": report.to_string(),
    }))
}
