//! Budget balances for operators: every configured budget in its current period, with
//! run-time overrides applied, and the `tollgate_budget_*` gauges.

use serde_json::{Value, json};
use tollgate_budget::{self as budget, StoreError};
use tollgate_config::units::{format_usd, usd_to_nanos};

use crate::error::GateError;
use crate::state::State;

/// One scope's budget in its current window.
#[derive(Debug, Clone)]
pub struct Row {
    pub scope: String,
    pub period: budget::Period,
    pub window: String,
    pub limit: i64,
    pub spent: i64,
    pub reserved: i64,
    /// `config` or `override`.
    pub source: &'static str,
}

impl Row {
    pub fn remaining(&self) -> i64 {
        (self.limit - self.spent - self.reserved).max(0)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scope": self.scope,
            "period": self.period.as_str(),
            "window": self.window,
            "limit_usd": format_usd(self.limit),
            "spent_usd": format_usd(self.spent),
            "reserved_usd": format_usd(self.reserved),
            "remaining_usd": format_usd(self.remaining()),
            "source": self.source,
        })
    }
}

/// Configured budgets (and run-time overrides, and run scopes seen in the store) under
/// `prefix`, each in its current window.
pub async fn rows(state: &State, prefix: Option<&str>) -> Result<Vec<Row>, StoreError> {
    let rt = state.runtime();
    let now = state.backend().now();
    let overrides = state.ledger().limit_overrides(prefix).await?;
    let balances = state.ledger().balances(prefix).await?;
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |scope: &str, period: budget::Period, tz, limit: i64, source| {
        let window = budget::window_id(period, tz, now);
        let (spent, reserved) = balances
            .iter()
            .find(|b| b.scope == scope && b.window == window)
            .map(|b| (b.spent, b.reserved))
            .unwrap_or((0, 0));
        rows.push(Row {
            scope: scope.to_string(),
            period,
            window,
            limit,
            spent,
            reserved,
            source,
        });
    };
    for (scope, s) in &rt.config.scopes {
        let Some(b) = &s.budget else { continue };
        if !budget::under_prefix(scope, prefix) {
            continue;
        }
        match overrides.iter().find(|o| &o.scope == scope) {
            Some(o) => push(scope, o.period, b.tz, o.limit, "override"),
            None => push(scope, b.period, b.tz, b.limit_nanos, "config"),
        }
    }
    for o in &overrides {
        if rt
            .config
            .scopes
            .get(&o.scope)
            .is_none_or(|s| s.budget.is_none())
        {
            push(&o.scope, o.period, None, o.limit, "override");
        }
    }
    // Run scopes and scopes no longer configured: their latest window as the store has it.
    for b in &balances {
        if !rows.iter().any(|r| r.scope == b.scope) && rows.len() < 10_000 {
            let latest = balances
                .iter()
                .filter(|x| x.scope == b.scope)
                .max_by(|x, y| x.window.cmp(&y.window));
            if latest.is_some_and(|l| l.window == b.window) {
                rows.push(Row {
                    scope: b.scope.clone(),
                    period: b.period,
                    window: b.window.clone(),
                    limit: b.limit,
                    spent: b.spent,
                    reserved: b.reserved,
                    source: "store",
                });
            }
        }
    }
    rows.sort_by(|a, b| a.scope.cmp(&b.scope));
    Ok(rows)
}

/// Sets the `tollgate_budget_*` gauges for configured scopes (run scopes stay out of the
/// labels, which must remain bounded).
pub async fn refresh_gauges(state: &State) {
    let rows = match rows(state, None).await {
        Ok(r) => r,
        Err(e) => {
            state.store_error("balances", &e);
            return;
        }
    };
    let rt = state.runtime();
    let m = &state.metrics;
    for r in rows
        .iter()
        .filter(|r| rt.config.scopes.contains_key(&r.scope))
    {
        m.budget_limit
            .with_label_values(&[&r.scope])
            .set(r.limit as f64 / 1e9);
        m.budget_spent
            .with_label_values(&[&r.scope])
            .set(r.spent as f64 / 1e9);
        m.budget_reserved
            .with_label_values(&[&r.scope])
            .set(r.reserved as f64 / 1e9);
    }
}

/// `POST /admin/budgets`: `{scope, limit_usd, period}` sets a run-time limit;
/// `limit_usd: null` clears it.
pub async fn set(state: &State, body: &Value) -> Result<Value, GateError> {
    let scope = body["scope"]
        .as_str()
        .ok_or_else(|| GateError::invalid("`scope` is required", Some("scope")))?;
    tollgate_config::valid_scope_path(scope).map_err(|e| GateError::invalid(e, Some("scope")))?;
    let rt = state.runtime();
    let configured = rt.config.scopes.get(scope).and_then(|s| s.budget);
    let period = match body["period"].as_str() {
        Some(p) => budget::Period::parse(p).ok_or_else(|| {
            GateError::invalid("`period` must be day, week, month or total", Some("period"))
        })?,
        None => configured
            .map(|b| b.period)
            .unwrap_or(budget::Period::Total),
    };
    let limit = match &body["limit_usd"] {
        Value::Null => None,
        v => {
            let usd = v.as_f64().ok_or_else(|| {
                GateError::invalid("`limit_usd` must be a number", Some("limit_usd"))
            })?;
            Some(usd_to_nanos(usd).map_err(|e| GateError::invalid(e, Some("limit_usd")))?)
        }
    };
    state
        .ledger()
        .set_limit(scope, limit, period)
        .await
        .map_err(|e| {
            state.store_error("set_limit", &e);
            GateError::StoreUnavailable
        })?;
    let rows = rows(state, Some(scope))
        .await
        .map_err(|_| GateError::StoreUnavailable)?;
    Ok(
        json!({ "budgets": rows.iter().filter(|r| r.scope == scope).map(Row::to_json).collect::<Vec<_>>() }),
    )
}
