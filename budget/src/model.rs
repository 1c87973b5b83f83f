//! The plain types a caller hands the store and gets back: budgets, windows, requests,
//! decisions and balances.

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

/// Money: integer nano-USD (1e-9 USD).
pub type Nanos = i64;

/// The largest amount a store accepts: 2^53 - 1 nano-USD (about 9 million USD), the range
/// the Redis scripts' numbers (Lua doubles) hold exactly.
pub const MAX_NANOS: Nanos = (1 << 53) - 1;

pub(crate) fn check_limit(what: &str, n: Nanos) -> Result<(), crate::StoreError> {
    if (0..=MAX_NANOS).contains(&n) {
        Ok(())
    } else {
        Err(crate::StoreError::Invalid(format!(
            "{what} must be between 0 and {MAX_NANOS} nano-USD (got {n})"
        )))
    }
}

pub use tollgate_types::Period;

/// The id of the calendar window `now` falls in: `d2026-11-22`, `w2026-W47` (ISO week),
/// `m2026-11` or `total`, computed in `tz` (UTC when `None`).
pub fn window_id(period: Period, tz: Option<Tz>, now: DateTime<Utc>) -> String {
    let local = now.with_timezone(&tz.unwrap_or(chrono_tz::UTC));
    match period {
        Period::Day => format!(
            "d{:04}-{:02}-{:02}",
            local.year(),
            local.month(),
            local.day()
        ),
        Period::Week => {
            let week = local.iso_week();
            format!("w{:04}-W{:02}", week.year(), week.week())
        }
        Period::Month => format!("m{:04}-{:02}", local.year(), local.month()),
        Period::Total => "total".to_owned(),
    }
}

/// A budget as configured for one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: Nanos,
    pub period: Period,
    /// The zone calendar windows are cut in; UTC when `None`.
    pub tz: Option<Tz>,
}

/// One scope on a request's path with its configured budget, if it has one.
///
/// Scopes without a configured budget are still worth naming: an admin override set at
/// run time (`set_limit`) makes them budgeted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeBudget {
    pub scope: String,
    pub budget: Option<Budget>,
}

/// A request to hold money on every scope of a path, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// Caller-chosen and unique per tenant; commit/release/extend name it.
    pub reservation_id: String,
    /// A retried reserve with the same key (per tenant) returns the first grant.
    pub idempotency_key: Option<String>,
    /// Every scope on the path, tenant first. All must share the tenant.
    pub scopes: Vec<ScopeBudget>,
    /// The worst case the caller wants to hold.
    pub amount: Nanos,
    /// Below this the request is useless: deny rather than grant less.
    pub min_amount: Nanos,
    /// How long the hold lives without a commit, release or extend.
    pub ttl: Duration,
    /// Forget the hold as soon as it is committed or released, instead of keeping it for
    /// `settled_retention`: for holds nothing reads or replays once settled (the LLM path),
    /// so the store does not grow with every request. A hold that lapses is still kept
    /// as expired for the retention, so a late commit is recognised as late; a commit or
    /// release of a forgotten hold answers `NotFound`.
    pub forget_settled: bool,
}

/// Why a reserve was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    BudgetExceeded,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::BudgetExceeded => "budget_exceeded",
        }
    }
}

/// The Cycles decision on a reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The whole amount is held.
    Allow,
    /// Only part of the amount (at least `min_amount`) is held: the caller must cap its spend.
    AllowWithCaps,
    /// Nothing is held; `scope` is the one with the least room.
    Deny { scope: String, reason: DenyReason },
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::AllowWithCaps => "allow_with_caps",
            Decision::Deny { .. } => "deny",
        }
    }

    pub fn is_allowed(&self) -> bool {
        !matches!(self, Decision::Deny { .. })
    }
}

/// The store's answer to a reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveAnswer {
    pub reservation_id: String,
    pub decision: Decision,
    /// What is held on every budgeted scope (0 on deny).
    pub granted: Nanos,
    /// The tightest budgeted scope and its remaining room after this reservation (on deny:
    /// the denying scope and its room, never below 0). `None` when no scope is budgeted.
    pub tightest: Option<(String, Nanos)>,
    /// When the hold lapses unless extended (`None` on deny).
    pub expires_at: Option<DateTime<Utc>>,
    /// True when this answer repeats an earlier reserve (same idempotency key or id).
    pub replayed: bool,
    /// Every budgeted scope of the request and its room after this answer (after the hold
    /// when one was taken; on deny the room each scope has), in the request's scope order,
    /// never below 0. Unbudgeted scopes are left out. A replay repeats what the first answer
    /// said; `decide` says what a reserve would. The tightest scope's entry equals `tightest`.
    pub remaining: Vec<(String, Nanos)>,
}

impl ReserveAnswer {
    /// The remaining room of the tightest scope, for `x-tollgate-budget-remaining-usd`
    /// (every scope's room is in the `remaining` field).
    pub fn remaining(&self) -> Option<Nanos> {
        self.tightest.as_ref().map(|(_, r)| *r)
    }
}

/// The answer to a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// `actual` is recorded as spent. `after_expiry` when the hold had already lapsed
    /// (the spend is recorded all the same: the money was spent). `replayed` when an
    /// earlier commit had settled it and this one changed nothing.
    Committed {
        actual: Nanos,
        after_expiry: bool,
        replayed: bool,
    },
    /// The reservation was released earlier; nothing is recorded.
    AlreadyReleased,
    NotFound,
}

/// The answer to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The hold is gone without spending; `replayed` when an earlier release did it.
    Released {
        replayed: bool,
    },
    /// The hold had lapsed and was reaped before; nothing changed.
    Expired,
    /// The reservation was committed earlier; nothing changed.
    AlreadyCommitted {
        actual: Nanos,
    },
    NotFound,
}

/// The answer to an extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendOutcome {
    Extended {
        expires_at: DateTime<Utc>,
    },
    /// Too late: the hold had lapsed.
    Expired,
    /// Already committed or released.
    Settled,
    NotFound,
}

/// A scope's standing in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub scope: String,
    pub window: String,
    pub period: Period,
    /// The limit in force: the override when one is set for this period, else the limit the
    /// last reservation carried.
    pub limit: Nanos,
    pub spent: Nanos,
    pub reserved: Nanos,
    /// `limit - spent - reserved`, never below 0.
    pub remaining: Nanos,
}

/// A limit set at run time, taking precedence over the configured one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOverride {
    pub scope: String,
    pub limit: Nanos,
    pub period: Period,
}

/// How a reserve settles once every scope's room is known; shared by the backends that
/// decide in Rust (the Redis scripts mirror it in Lua).
pub(crate) fn grant(amount: Nanos, min_amount: Nanos, least_room: Option<Nanos>) -> Option<Nanos> {
    match least_room {
        None => Some(amount),
        // An exhausted or zero-limit scope denies even a free request: its owner said no.
        Some(room) if room <= 0 => None,
        Some(room) => {
            let granted = amount.min(room);
            (granted >= min_amount).then_some(granted)
        }
    }
}

/// A balance row, with the limit an override sets for the row's period when there is one.
pub(crate) fn balance(
    scope: String,
    window: String,
    period: Period,
    recorded_limit: Nanos,
    spent: Nanos,
    reserved: Nanos,
    overrides: &[LimitOverride],
) -> Balance {
    let limit = overrides
        .iter()
        .find(|o| o.scope == scope && o.period == period)
        .map_or(recorded_limit, |o| o.limit);
    Balance {
        scope,
        window,
        period,
        limit,
        spent,
        reserved,
        remaining: (limit - spent - reserved).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn window_ids_follow_the_calendar() {
        let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
        let berlin = Some(chrono_tz::Europe::Berlin);
        let cases = [
            (Period::Day, None, at(2026, 11, 22, 23), "d2026-11-22"),
            (Period::Day, berlin, at(2026, 11, 22, 23), "d2026-11-23"),
            (Period::Week, None, at(2026, 11, 22, 12), "w2026-W47"),
            (Period::Week, None, at(2026, 11, 23, 0), "w2026-W48"),
            // ISO weeks: 2027-01-01 is a Friday, still in 2026's week 53.
            (Period::Week, None, at(2027, 1, 1, 0), "w2026-W53"),
            (Period::Month, None, at(2026, 11, 30, 23), "m2026-11"),
            (Period::Month, berlin, at(2026, 11, 30, 23), "m2026-12"),
            (Period::Total, berlin, at(2026, 11, 30, 23), "total"),
        ];
        for (period, tz, now, want) in cases {
            assert_eq!(window_id(period, tz, now), want, "{period} {tz:?} {now}");
        }
    }

    #[test]
    fn grant_table() {
        let cases = [
            (100, 10, None, Some(100)),
            (100, 10, Some(500), Some(100)),
            (100, 10, Some(40), Some(40)),
            (100, 10, Some(10), Some(10)),
            (100, 10, Some(9), None),
            (0, 0, Some(0), None),
            (0, 0, Some(-5), None),
            (0, 0, Some(1), Some(0)),
        ];
        for (amount, min, room, want) in cases {
            assert_eq!(grant(amount, min, room), want, "{amount} {min} {room:?}");
        }
    }

    #[test]
    fn periods_round_trip() {
        for &p in Period::ALL {
            assert_eq!(Period::parse(p.as_str()), Some(p));
        }
        assert_eq!(Period::parse("year"), None);
    }
}
