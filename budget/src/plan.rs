//! A reserve request checked and made concrete for a backend: its tenant, and every scope's
//! configured budget with the window ids each period would use right now.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::StoreError;
use crate::model::{Nanos, Period, ReserveRequest, check_limit, window_id};
use crate::scope::{tenant_of, validate_scope};
use crate::store::check_amounts;

/// One scope of a planned reserve.
#[derive(Debug, Clone)]
pub(crate) struct PlannedScope {
    pub scope: String,
    pub configured: Option<(Nanos, Period)>,
    /// Window ids for day, week and month in the scope's zone; an override may pick a
    /// period other than the configured one, so all are ready.
    pub windows: [String; 3],
}

impl PlannedScope {
    pub fn window(&self, period: Period) -> &str {
        match period {
            Period::Day => &self.windows[0],
            Period::Week => &self.windows[1],
            Period::Month => &self.windows[2],
            Period::Total => "total",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub tenant: String,
    pub scopes: Vec<PlannedScope>,
}

pub(crate) fn plan(req: &ReserveRequest, now: DateTime<Utc>) -> Result<Plan, StoreError> {
    check_amounts(req)?;
    let first = req
        .scopes
        .first()
        .ok_or_else(|| StoreError::Invalid("a reservation names at least one scope".into()))?;
    let tenant = tenant_of(&first.scope).to_owned();
    // Requests name at most six scopes and one or two zones: a linear cache beats a map.
    let mut zones: Vec<(Option<Tz>, [String; 3])> = Vec::with_capacity(2);
    let mut scopes = Vec::with_capacity(req.scopes.len());
    for s in &req.scopes {
        validate_scope(&s.scope)?;
        if tenant_of(&s.scope) != tenant {
            return Err(StoreError::Invalid(format!(
                "scope `{}` is not under tenant `{tenant}`",
                s.scope
            )));
        }
        if scopes.iter().any(|p: &PlannedScope| p.scope == s.scope) {
            return Err(StoreError::Invalid(format!(
                "scope `{}` is named twice",
                s.scope
            )));
        }
        if let Some(b) = s.budget {
            check_limit(&format!("the limit of `{}`", s.scope), b.limit)?;
        }
        let tz = s.budget.and_then(|b| b.tz);
        let windows = match zones.iter().find(|(z, _)| *z == tz) {
            Some((_, w)) => w.clone(),
            None => {
                let w = [Period::Day, Period::Week, Period::Month].map(|p| window_id(p, tz, now));
                zones.push((tz, w.clone()));
                w
            }
        };
        scopes.push(PlannedScope {
            scope: s.scope.clone(),
            configured: s.budget.map(|b| (b.limit, b.period)),
            windows,
        });
    }
    Ok(Plan { tenant, scopes })
}
