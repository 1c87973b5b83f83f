//! Agent keys issued at run time: issue, list, revoke, rotate with a grace period.
//!
//! The secret is returned once, at issue or rotation; the store keeps only its hash.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tollgate_budget::KeyRecord;
use tollgate_config::units::parse_duration;

use crate::error::GateError;
use crate::keys;
use crate::state::State;

fn store_down(state: &State, op: &str, e: tollgate_budget::StoreError) -> GateError {
    state.store_error(op, &e);
    GateError::StoreUnavailable
}

fn duration_field(body: &Value, field: &str) -> Result<Option<Duration>, GateError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_duration(text)
            .map(Some)
            .map_err(|e| GateError::invalid(format!("`{field}`: {e}"), Some(field))),
        Some(_) => Err(GateError::invalid(
            format!("`{field}` must be a duration such as \"30d\""),
            Some(field),
        )),
    }
}

/// `now + d`, or a 400 naming `field` when that is past what a timestamp holds (a request
/// must never panic the server).
fn after(now: DateTime<Utc>, d: Duration, field: &str) -> Result<DateTime<Utc>, GateError> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .ok_or_else(|| GateError::invalid(format!("`{field}` is too far away"), Some(field)))
}

fn status(k: &KeyRecord, now: DateTime<Utc>) -> &'static str {
    if k.revoked_at.is_some_and(|t| t <= now) {
        "revoked"
    } else if k.expires_at.is_some_and(|t| t <= now) || k.not_after.is_some_and(|t| t <= now) {
        "expired"
    } else if k.not_after.is_some() {
        "rotating"
    } else {
        "active"
    }
}

pub fn describe(k: &KeyRecord, now: DateTime<Utc>) -> Value {
    json!({
        "id": k.id,
        "agent": k.agent,
        "label": k.label,
        "source": "issued",
        "status": status(k, now),
        "created_at": k.created_at.to_rfc3339(),
        "expires_at": k.expires_at.map(|t| t.to_rfc3339()),
        "valid_until": k.not_after.map(|t| t.to_rfc3339()),
        "revoked_at": k.revoked_at.map(|t| t.to_rfc3339()),
        "parent_id": k.parent_id,
    })
}

/// Stores a fresh key for `agent`; returns the record and the secret (shown once).
pub async fn mint(
    state: &State,
    agent: &str,
    label: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    parent_id: Option<String>,
) -> Result<(KeyRecord, String), GateError> {
    let new = keys::generate();
    let record = KeyRecord {
        id: new.id,
        agent: agent.to_string(),
        sha256: new.sha256,
        label,
        created_at: state.backend().now(),
        expires_at,
        revoked_at: None,
        not_after: None,
        parent_id,
    };
    state
        .keys()
        .put_key(&record)
        .await
        .map_err(|e| store_down(state, "put_key", e))?;
    Ok((record, new.secret))
}

/// `POST /admin/keys`: `{agent, expires: "30d"?, label?}`.
pub async fn issue(state: &State, body: &Value) -> Result<Value, GateError> {
    let agent = body["agent"]
        .as_str()
        .ok_or_else(|| GateError::invalid("`agent` is required", Some("agent")))?;
    if !state.runtime().config.agents.contains_key(agent) {
        return Err(GateError::invalid(
            format!("unknown agent `{agent}`: agents are defined in the config"),
            Some("agent"),
        ));
    }
    let now = state.backend().now();
    let expires_at = duration_field(body, "expires")?
        .map(|d| after(now, d, "expires"))
        .transpose()?;
    let label = body["label"].as_str().map(str::to_string);
    let (record, secret) = mint(state, agent, label, expires_at, None).await?;
    let mut out = describe(&record, now);
    out["key"] = Value::String(secret);
    Ok(out)
}

pub async fn list(state: &State) -> Result<Value, GateError> {
    let now = state.backend().now();
    let issued = state
        .keys()
        .list_keys()
        .await
        .map_err(|e| store_down(state, "list_keys", e))?;
    let rt = state.runtime();
    let mut keys: Vec<Value> = rt
        .config
        .keys
        .iter()
        .map(|k| json!({ "id": k.id, "agent": k.agent, "source": "config", "status": "active" }))
        .collect();
    keys.extend(issued.iter().map(|k| describe(k, now)));
    Ok(json!({ "keys": keys }))
}

async fn issued(state: &State, id: &str) -> Result<KeyRecord, GateError> {
    if state.runtime().config.keys.iter().any(|k| k.id == id) {
        return Err(GateError::invalid(
            format!("`{id}` is a static key from the config: remove it there and reload"),
            None,
        ));
    }
    state
        .keys()
        .key_by_id(id)
        .await
        .map_err(|e| store_down(state, "key_by_id", e))?
        .ok_or_else(|| GateError::NotFound {
            path: format!("key {id}"),
        })
}

/// Keys minted (transitively) from the key `root` stop working by `until` too: their
/// `not_after` is moved up to it. Authentication refuses them then anyway (it checks the
/// chain of parent keys); this makes the key list say so.
async fn end_descendants(state: &State, root: &str, until: DateTime<Utc>) -> Result<(), GateError> {
    let all = state
        .keys()
        .list_keys()
        .await
        .map_err(|e| store_down(state, "list_keys", e))?;
    let mut ended = vec![root.to_string()];
    let mut i = 0;
    while let Some(parent) = ended.get(i).cloned() {
        i += 1;
        let children = all
            .iter()
            .filter(|k| k.parent_id.as_deref() == Some(parent.as_str()));
        for k in children {
            if ended.contains(&k.id) {
                continue;
            }
            ended.push(k.id.clone());
            if k.not_after.is_some_and(|t| t <= until) || k.revoked_at.is_some() {
                continue;
            }
            let mut k = k.clone();
            k.not_after = Some(until);
            state
                .keys()
                .update_key(&k)
                .await
                .map_err(|e| store_down(state, "update_key", e))?;
        }
    }
    Ok(())
}

pub async fn revoke(state: &State, id: &str) -> Result<Value, GateError> {
    issued(state, id).await?;
    let revoked = state
        .keys()
        .revoke_key(id)
        .await
        .map_err(|e| store_down(state, "revoke_key", e))?
        .unwrap_or_default();
    Ok(json!({ "revoked": revoked }))
}

/// `POST /admin/keys/{id}/rotate`: `{grace: "1h"?}`: a new key for the same agent; the old
/// one keeps working until the grace period ends.
pub async fn rotate(state: &State, id: &str, body: &Value) -> Result<Value, GateError> {
    let mut old = issued(state, id).await?;
    let now = state.backend().now();
    if !old.usable_at(now) {
        return Err(GateError::invalid(
            format!("key `{id}` is no longer usable and cannot be rotated"),
            None,
        ));
    }
    let grace = duration_field(body, "grace")?.unwrap_or(Duration::from_secs(3600));
    let (record, secret) = mint(
        state,
        &old.agent,
        old.label.clone(),
        old.expires_at,
        old.parent_id.clone(),
    )
    .await?;
    let until = after(now, grace, "grace")?;
    old.not_after = Some(old.not_after.map_or(until, |t| t.min(until)));
    state
        .keys()
        .update_key(&old)
        .await
        .map_err(|e| store_down(state, "update_key", e))?;
    end_descendants(state, &old.id, until).await?;
    let mut out = describe(&record, now);
    out["key"] = Value::String(secret);
    out["previous"] = describe(&old, now);
    Ok(out)
}
