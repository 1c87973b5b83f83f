//! Human approval of escalated tool calls: list what waits, approve or deny it. A decision
//! is an audit record of its own.

use serde_json::{Value, json};
use tollgate_audit::{Decision, Record, Stage, ToolCall};
use tollgate_budget::{ApprovalRecord, ApprovalStatus};

use super::query_param;
use crate::error::GateError;
use crate::state::State;

fn store_down(state: &State, op: &str, e: tollgate_budget::StoreError) -> GateError {
    state.store_error(op, &e);
    GateError::StoreUnavailable
}

pub fn describe(a: &ApprovalRecord, now: chrono::DateTime<chrono::Utc>) -> Value {
    let status = if a.live_at(now) || a.status != ApprovalStatus::Pending {
        a.status
    } else {
        ApprovalStatus::Expired
    };
    json!({
        "id": a.id,
        "agent": a.agent,
        "tool": a.tool,
        "arguments": a.arguments,
        "request_id": a.request_id,
        "status": status.as_str(),
        "created_at": a.created_at.to_rfc3339(),
        "expires_at": a.expires_at.to_rfc3339(),
        "decided_at": a.decided_at.map(|t| t.to_rfc3339()),
    })
}

/// `GET /admin/approvals[?status=pending]`.
pub async fn list(state: &State, query: &str) -> Result<Value, GateError> {
    let status = match query_param(query, "status") {
        Some(s) => Some(ApprovalStatus::parse(&s).ok_or_else(|| {
            GateError::invalid(
                "`status` must be pending, approved, denied or expired",
                Some("status"),
            )
        })?),
        None => None,
    };
    let now = state.backend().now();
    let all = state
        .approvals()
        .list_approvals(status)
        .await
        .map_err(|e| store_down(state, "list_approvals", e))?;
    Ok(json!({ "approvals": all.iter().map(|a| describe(a, now)).collect::<Vec<_>>() }))
}

/// `POST /admin/approvals/{id}/approve` and `/deny`.
pub async fn decide(state: &State, id: &str, approve: bool) -> Result<Value, GateError> {
    let record = state
        .approvals()
        .decide_approval(id, approve)
        .await
        .map_err(|e| store_down(state, "decide_approval", e))?
        .ok_or_else(|| GateError::NotFound {
            path: format!("approval {id}"),
        })?;
    let wanted = if approve {
        ApprovalStatus::Approved
    } else {
        ApprovalStatus::Denied
    };
    if record.status != wanted {
        return Err(GateError::invalid(
            format!(
                "approval {id} is {} and can no longer be decided",
                record.status.as_str()
            ),
            None,
        ));
    }
    let decision = if approve {
        Decision::Allow
    } else {
        Decision::Deny
    };
    let mut audit = Record::new(format!("approval:{id}"), "approvals", decision);
    audit.stage = Some(Stage::Tool);
    audit.agent = Some(record.agent.clone());
    audit.reasons = vec![
        if approve {
            "approved_by_operator"
        } else {
            "denied_by_operator"
        }
        .to_string(),
    ];
    audit.tools = vec![ToolCall {
        name: record.tool.clone(),
        decision,
        approval_id: Some(id.to_string()),
    }];
    state.append_audit(&mut audit).await;
    Ok(describe(&record, state.backend().now()))
}
