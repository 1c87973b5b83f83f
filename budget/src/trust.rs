//! Trust scores: a per-agent penalty that decays with time and shrinks with good behaviour.
//!
//! The state of an agent is a penalty `P >= 0` and the time `t0` it was last updated;
//! `trust = exp(-P)` (1.0 = fully trusted). At time `t` the penalty has decayed to
//! `P(t) = P(t0) * 0.5^((t - t0) / half_life)` (no decay backwards: `t < t0` counts as
//! `t0`). Recording an event at `t` stores
//! `P' = (P(t) + penalty) * (success ? 1 - recovery : 1)`, then `t0 = t`. The caller owns the
//! policy: it passes the weight of each event (policy violation, guardrail block, denied tool
//! call, upstream error) as `penalty`, and `success` for a request that went well.
//! `redis/lua/trust/trust_record.lua` computes the same expression in the same order.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreError;

/// Below this a penalty counts as none: the record is forgotten and `trust_all` omits it.
pub const NEGLIGIBLE_PENALTY: f64 = 1e-9;

/// How trust comes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrustParams {
    /// Time for a penalty to halve by itself (default 1 h).
    pub half_life: Duration,
    /// Fraction of the penalty each successful request removes (default 0.02).
    pub recovery: f64,
}

impl Default for TrustParams {
    fn default() -> Self {
        TrustParams {
            half_life: Duration::from_secs(3600),
            recovery: 0.02,
        }
    }
}

impl TrustParams {
    pub(crate) fn half_life_ms(&self) -> f64 {
        self.half_life.as_millis() as f64
    }
}

/// Per-agent trust scores: the penalty each agent carries and how it decays.
#[async_trait]
pub trait TrustStore: Send + Sync + std::fmt::Debug {
    /// Records an event for `agent` (see the module doc for the formula) and returns its new
    /// trust.
    async fn trust_record(
        &self,
        agent: &str,
        penalty: f64,
        success: bool,
        params: &TrustParams,
    ) -> Result<f64, StoreError>;

    /// The agent's trust now (1.0 when nothing is recorded).
    async fn trust_get(&self, agent: &str, params: &TrustParams) -> Result<f64, StoreError>;

    /// Forgets the agent's penalty: full trust again (the admin reset).
    async fn trust_reset(&self, agent: &str) -> Result<(), StoreError>;

    /// Every agent whose penalty is not negligible, with its trust now, sorted by agent.
    async fn trust_all(&self, params: &TrustParams) -> Result<Vec<(String, f64)>, StoreError>;
}

/// The score of a penalty.
pub fn trust_of(penalty: f64) -> f64 {
    (-penalty).exp()
}

/// `P(t)` from `P(t0)`, times in ms.
pub fn decayed(penalty: f64, t0_ms: i64, now_ms: i64, params: &TrustParams) -> f64 {
    let dt = (now_ms - t0_ms).max(0) as f64;
    penalty * 0.5f64.powf(dt / params.half_life_ms())
}

/// The penalty stored after recording an event at `now_ms`.
pub fn recorded(
    penalty: f64,
    t0_ms: i64,
    now_ms: i64,
    added: f64,
    success: bool,
    params: &TrustParams,
) -> f64 {
    let p = decayed(penalty, t0_ms, now_ms, params) + added;
    if success {
        p * (1.0 - params.recovery)
    } else {
        p
    }
}

/// How long a stored penalty takes to decay below `NEGLIGIBLE_PENALTY` by time alone, in ms:
/// the record can be forgotten then.
pub(crate) fn forget_after_ms(penalty: f64, params: &TrustParams) -> i64 {
    if penalty <= NEGLIGIBLE_PENALTY {
        return 0;
    }
    let halvings = (penalty / NEGLIGIBLE_PENALTY).log2();
    (halvings * params.half_life_ms())
        .ceil()
        .min(i64::MAX as f64 / 2.0) as i64
}

pub(crate) fn check_trust(
    agent: &str,
    penalty: f64,
    params: &TrustParams,
) -> Result<(), StoreError> {
    crate::store::check_id("agent", agent)?;
    if !(penalty.is_finite() && penalty >= 0.0) {
        return Err(StoreError::Invalid(format!(
            "a trust penalty must be finite and >= 0 (got {penalty})"
        )));
    }
    check_params(params)
}

pub(crate) fn check_params(params: &TrustParams) -> Result<(), StoreError> {
    if params.half_life < Duration::from_millis(1) {
        return Err(StoreError::Invalid(
            "the trust half-life must be at least 1 ms".into(),
        ));
    }
    if !(0.0..=1.0).contains(&params.recovery) {
        return Err(StoreError::Invalid(format!(
            "trust recovery must be within 0..=1 (got {})",
            params.recovery
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula() {
        let p = TrustParams::default();
        let hour = 3_600_000;
        assert_eq!(decayed(2.0, 0, hour, &p), 1.0);
        assert_eq!(decayed(2.0, 0, 2 * hour, &p), 0.5);
        assert_eq!(decayed(2.0, hour, 0, &p), 2.0, "no decay backwards");
        assert_eq!(recorded(2.0, 0, hour, 0.5, false, &p), 1.5);
        assert!((recorded(2.0, 0, hour, 0.5, true, &p) - 1.47).abs() < 1e-12);
        assert_eq!(trust_of(0.0), 1.0);
        assert!((trust_of(1.0) - 0.367_879_441_171_442_3).abs() < 1e-15);
    }

    #[test]
    fn forgetting_waits_for_the_penalty_to_become_negligible() {
        let p = TrustParams::default();
        let after = forget_after_ms(10.0, &p);
        assert!(decayed(10.0, 0, after, &p) <= NEGLIGIBLE_PENALTY);
        assert!(decayed(10.0, 0, after - 60_000, &p) > NEGLIGIBLE_PENALTY);
        assert_eq!(forget_after_ms(0.0, &p), 0);
    }

    #[test]
    fn bad_parameters() {
        let p = TrustParams::default();
        assert!(check_trust("a", f64::NAN, &p).is_err());
        assert!(check_trust("a", -1.0, &p).is_err());
        let zero = TrustParams {
            half_life: Duration::ZERO,
            ..p
        };
        assert!(check_trust("a", 1.0, &zero).is_err());
        let over = TrustParams { recovery: 1.5, ..p };
        assert!(check_params(&over).is_err());
        assert!(check_trust("a", 0.0, &p).is_ok());
    }
}
