//! The reads: `GET /v1/reservations` (list), `GET /v1/reservations/{id}`, `GET
//! /v1/balances`. An agent sees its own reservations, and the balances of the scopes it
//! spends against (its path up to the tenant) and of those under it: never a sibling's.

use std::collections::BTreeMap;

use pingora_proxy::Session;
use serde_json::{Map, Value, json};
use tollgate_budget::{self as budget, Balance};

use super::Call;
use super::ops::store_down;
use super::registry::{Reservation, Status};
use super::settle::{not_found, owned};
use super::wire::{
    self, CyclesError, ErrorCode, LEVELS, Result, amount_json, ceil_microcents, floor_microcents,
};

/// The query string as name → value, percent-decoded; a repeated name keeps its first value.
fn query(session: &Session) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in session.req_header().uri.query().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(k)).or_insert_with(|| decode(v));
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `limit` (1-200, default 50).
fn limit(q: &BTreeMap<String, String>) -> Result<usize> {
    match q.get("limit").filter(|s| !s.is_empty()) {
        None => Ok(50),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| CyclesError::invalid("'limit' must be an integer from 1 to 200.")),
    }
}

/// `limit` and `cursor` (an offset this server handed out), for lists built here.
fn page(q: &BTreeMap<String, String>) -> Result<(usize, usize)> {
    let offset = match q.get("cursor").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| CyclesError::invalid("'cursor' is not a cursor this server returned."))?,
    };
    Ok((limit(q)?, offset))
}

/// One page of `items` as the protocol's list shape.
fn paged(items: Vec<Value>, field: &str, limit: usize, offset: usize) -> Value {
    let total = items.len();
    let rows: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let next = offset + rows.len();
    let mut v = json!({ field: rows, "has_more": next < total });
    if next < total {
        v["next_cursor"] = json!(next.to_string());
    }
    v
}

fn summary(r: &Reservation, now: i64) -> Value {
    let mut v = json!({
        "reservation_id": r.id,
        "status": r.status(now).as_str(),
        "idempotency_key": r.idempotency_key,
        "subject": r.subject,
        "action": r.action,
        "reserved": amount_json(floor_microcents(r.reserved)),
        "created_at_ms": r.created_ms,
        "expires_at_ms": r.expires_ms,
        "scope_path": r.scope_path,
        "affected_scopes": r.affected,
    });
    if let Some(t) = r.finalized_ms {
        v["finalized_at_ms"] = json!(t);
    }
    if let Some(c) = r.committed {
        v["committed"] = amount_json(floor_microcents(c));
    }
    v
}

/// Store pages read at most for one list answer: filters that match little end the page
/// early with `has_more` and a cursor rather than reading the whole retention.
const LIST_SCANS: usize = 10;
/// Records read per store page while filtering.
const SCAN_PAGE: usize = 200;

/// `GET /v1/reservations`: this agent's reservations, newest first, filtered by status,
/// idempotency key and subject fields; unknown parameters are ignored. The records are the
/// store's, so every instance lists the same; the cursor is the store's position of the
/// last record looked at.
pub async fn list(call: &Call<'_>, session: &Session) -> Result<(u16, Value)> {
    let q = query(session);
    if let Some(t) = q.get("tenant").filter(|t| !t.is_empty())
        && t != call.agent.tenant()
    {
        return Err(CyclesError::new(
            ErrorCode::Forbidden,
            format!("This key's tenant is `{}`.", call.agent.tenant()),
        ));
    }
    let status = match q.get("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            CyclesError::invalid("'status' must be ACTIVE, COMMITTED, RELEASED or EXPIRED.")
        })?),
    };
    let limit = limit(&q)?;
    let include: Vec<&str> = q
        .get("include")
        .map(|s| s.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let now = call.now_ms();
    let wanted = |r: &Reservation| {
        status.is_none_or(|s| r.status(now) == s)
            && q.get("idempotency_key")
                .filter(|k| !k.is_empty())
                .is_none_or(|k| &r.idempotency_key == k)
            && LEVELS.iter().all(|level| {
                q.get(*level)
                    .filter(|v| !v.is_empty())
                    .is_none_or(|v| r.subject.get(*level).and_then(Value::as_str) == Some(v))
            })
    };
    let mut cursor = q.get("cursor").filter(|c| !c.is_empty()).cloned();
    let mut rows = Vec::new();
    let mut more = false;
    'scan: for _ in 0..LIST_SCANS {
        let page = call
            .state
            .cycles()
            .cycle_list(
                call.agent.tenant(),
                &call.agent.id,
                cursor.as_deref(),
                SCAN_PAGE,
            )
            .await
            .map_err(|e| match e {
                tollgate_budget::StoreError::Invalid(_) => {
                    CyclesError::invalid("'cursor' is not a cursor this server returned.")
                }
                e => store_down(call, "cycles_list", e),
            })?;
        let count = page.records.len();
        for (i, record) in page.records.into_iter().enumerate() {
            cursor = Some(record.cursor());
            let Some(r) = Reservation::from_record(record) else {
                continue;
            };
            if wanted(&r) {
                rows.push(row(&r, now, &include));
                if rows.len() == limit {
                    more = i + 1 < count || page.next.is_some();
                    break 'scan;
                }
            }
        }
        more = page.next.is_some();
        if !more {
            break;
        }
    }
    let mut v = json!({ "reservations": rows, "has_more": more });
    if more {
        v["next_cursor"] = json!(cursor);
    }
    Ok((200, v))
}

/// A list row: the summary, with the metadata the caller asked to include.
fn row(r: &Reservation, now: i64, include: &[&str]) -> Value {
    let mut v = summary(r, now);
    if include.contains(&"metadata")
        && let Some(m) = &r.metadata
    {
        v["metadata"] = m.clone();
    }
    if include.contains(&"committed_metadata")
        && let Some(m) = &r.committed_metadata
    {
        v["committed_metadata"] = m.clone();
    }
    v
}

/// `GET /v1/reservations/{id}`: 410 once expired, as the protocol says.
pub async fn get(call: &Call<'_>, id: &str) -> Result<(u16, Value)> {
    let r = owned(call, id).await?.ok_or_else(|| not_found(id))?;
    let now = call.now_ms();
    if r.status(now) == Status::Expired {
        return Err(CyclesError::new(
            ErrorCode::ReservationExpired,
            format!("Reservation `{id}` has expired."),
        ));
    }
    Ok((200, row(&r, now, &["metadata", "committed_metadata"])))
}

/// A tollgate balance row as the protocol's `Balance`: amounts in whole microcents, spend
/// and holds rounded up and the allocation down, so `remaining = allocated - spent -
/// reserved` holds exactly and never shows more room than there is.
fn balance_json(b: &Balance) -> Value {
    let allocated = floor_microcents(b.limit);
    let spent = ceil_microcents(b.spent);
    let reserved = ceil_microcents(b.reserved);
    json!({
        "scope": b.scope,
        "scope_path": b.scope,
        "allocated": amount_json(allocated),
        "spent": amount_json(spent),
        "reserved": amount_json(reserved),
        "remaining": { "unit": wire::USD_MICROCENTS, "amount": allocated - spent - reserved },
    })
}

/// `GET /v1/balances`: the budgeted scopes at or under the filter's scope that this agent
/// may see, in their current windows.
pub async fn balances(call: &Call<'_>, session: &Session) -> Result<(u16, Value)> {
    let q = query(session);
    let mut filter = Map::new();
    for level in LEVELS {
        if let Some(v) = q.get(level).filter(|v| !v.is_empty()) {
            filter.insert(level.to_string(), Value::String(v.clone()));
        }
    }
    if filter.is_empty() {
        return Err(CyclesError::invalid(
            "At least one of tenant, workspace, app, workflow, agent, toolset is required.",
        ));
    }
    let subject = wire::subject(&Value::Object(filter), "the balance filter")?;
    let (limit, offset) = page(&q)?;
    let agent_scope = call.agent.scope.as_str();
    let mut prefix = subject.path.clone();
    if let Some(t) = &subject.toolset {
        prefix = budget::run_scope(&prefix, t)
            .map_err(|_| CyclesError::invalid("The toolset cannot form a scope here."))?;
    }
    let visible = |s: &str| {
        budget::under_prefix(agent_scope, Some(s)) || budget::under_prefix(s, Some(agent_scope))
    };
    if subject.path.is_empty() || !visible(&prefix) {
        return Err(CyclesError::new(
            ErrorCode::Forbidden,
            format!("The filter's scope lies outside this key's scope `{agent_scope}`."),
        ));
    }
    let rows = call
        .state
        .ledger()
        .balances(Some(&prefix))
        .await
        .map_err(|e| {
            call.state.store_error("balances", &e);
            CyclesError::from(crate::error::GateError::StoreUnavailable)
        })?;
    let config = &call.rt.config;
    let now = call.state.backend().now();
    let tz = |scope: &str| {
        config
            .scopes
            .get(scope)
            .and_then(|s| s.budget.as_ref())
            .and_then(|b| b.tz)
    };
    let mut shown: BTreeMap<String, Balance> = BTreeMap::new();
    for b in rows {
        if visible(&b.scope) && b.window == budget::window_id(b.period, tz(&b.scope), now) {
            shown.insert(b.scope.clone(), b);
        }
    }
    // Budgets on the agent's path or under it that nothing was reserved in yet.
    for (scope, s) in &config.scopes {
        let Some(b) = &s.budget else { continue };
        if visible(scope)
            && budget::under_prefix(scope, Some(&prefix))
            && !shown.contains_key(scope)
        {
            shown.insert(
                scope.clone(),
                Balance {
                    scope: scope.clone(),
                    window: budget::window_id(b.period, b.tz, now),
                    period: b.period,
                    limit: b.limit_nanos,
                    spent: 0,
                    reserved: 0,
                    remaining: b.limit_nanos,
                },
            );
        }
    }
    let items: Vec<Value> = shown.values().map(balance_json).collect();
    Ok((200, paged(items, "balances", limit, offset)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(decode("a%2Fb+c"), "a/b c");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%4"), "%4");
    }

    #[test]
    fn balances_keep_the_ledger_invariant() {
        let b = Balance {
            scope: "acme".into(),
            window: "total".into(),
            period: budget::Period::Total,
            limit: 1_000_000_005,
            spent: 11,
            reserved: 20,
            remaining: 1_000_000_005 - 31,
        };
        let v = balance_json(&b);
        let n = |f: &str| v[f]["amount"].as_i64().unwrap();
        assert_eq!(n("allocated"), 100_000_000);
        assert_eq!(n("spent"), 2);
        assert_eq!(n("reserved"), 2);
        assert_eq!(n("remaining"), n("allocated") - n("spent") - n("reserved"));
        // Never more room than the ledger has.
        assert!(n("remaining") * 10 <= b.remaining);
    }

    #[test]
    fn pages() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let v = paged(items.clone(), "x", 2, 0);
        assert_eq!(v["x"], json!([0, 1]));
        assert_eq!(v["next_cursor"], "2");
        let v = paged(items, "x", 2, 4);
        assert_eq!(v["x"], json!([4]));
        assert_eq!(v["has_more"], false);
    }
}
