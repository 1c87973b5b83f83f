//! Stage 3b: rate limits — requests and tokens per minute, concurrent requests — per agent
//! (its policy's `rate`) and per scope (each scope's `rate`), exact across instances.
//!
//! One atomic acquire counts the request in every window and takes every concurrency
//! lease, or nothing at all. Tokens are counted from the estimate and corrected to the
//! actual usage when the request ends; leases are returned in `logging()`.

use std::time::Duration;

use tollgate_budget::{AcquireRequest, Acquired, LeaseLimit, WindowLimit, WindowState};
use tollgate_config::{Config, Policy, Rate};

use super::context::{Agent, Ctx};
use crate::error::GateError;
use crate::state::State;

const MINUTE: Duration = Duration::from_secs(60);

/// What a granted acquire holds until the request ends.
#[derive(Debug, Clone)]
pub struct RateHold {
    /// The tenant the counters live under (`AcquireRequest::shard`).
    pub shard: String,
    pub lease_id: String,
    /// Keys of the token windows, corrected with the actual usage.
    pub token_keys: Vec<String>,
    pub lease_keys: Vec<String>,
    pub estimated_tokens: u64,
}

fn add(
    rate: &Rate,
    prefix: &str,
    tokens: u64,
    windows: &mut Vec<WindowLimit>,
    leases: &mut Vec<LeaseLimit>,
) {
    if let Some(rpm) = rate.rpm {
        windows.push(WindowLimit {
            key: format!("{prefix}:rpm"),
            window: MINUTE,
            limit: u64::from(rpm),
            cost: 1,
        });
    }
    if let Some(tpm) = rate.tpm {
        windows.push(WindowLimit {
            key: format!("{prefix}:tpm"),
            window: MINUTE,
            limit: tpm,
            cost: tokens,
        });
    }
    if let Some(max) = rate.concurrent {
        leases.push(LeaseLimit {
            key: format!("{prefix}:concurrent"),
            max,
        });
    }
}

/// The windows and leases a request of `agent` counts in.
fn limits(
    config: &Config,
    agent: &Agent,
    policy: &Policy,
    tokens: u64,
) -> (Vec<WindowLimit>, Vec<LeaseLimit>) {
    let (mut windows, mut leases) = (Vec::new(), Vec::new());
    add(
        &policy.rate,
        &format!("agent:{}", agent.id),
        tokens,
        &mut windows,
        &mut leases,
    );
    // A sub-agent's requests count for every agent above it: children share their
    // parent's rates, never multiply them.
    for a in agent.ancestors.iter() {
        let rate = Rate {
            rpm: a.rate.rpm,
            tpm: a.rate.tpm,
            concurrent: a.rate.concurrent,
        };
        add(
            &rate,
            &format!("agent:{}", a.id),
            tokens,
            &mut windows,
            &mut leases,
        );
    }
    let scope = &agent.scope;
    let prefixes = scope
        .match_indices('/')
        .map(|(i, _)| &scope[..i])
        .chain([scope.as_str()]);
    for prefix in prefixes {
        if let Some(s) = config.scopes.get(prefix) {
            add(
                &s.rate,
                &format!("scope:{prefix}"),
                tokens,
                &mut windows,
                &mut leases,
            );
        }
    }
    (windows, leases)
}

/// OpenAI's duration format for `x-ratelimit-reset-*`: `1s`, `6m0s`, `250ms`.
pub fn reset_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

/// The `x-ratelimit-*` headers: for requests and for tokens, the window (the agent's own or
/// a scope's) with the least room left, which is the one a client hits first.
fn headers(states: &[WindowState]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let kinds = [
        (
            ":rpm",
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        ),
        (
            ":tpm",
            [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        ),
    ];
    for (suffix, [limit, remaining, reset]) in kinds {
        if let Some(s) = states
            .iter()
            .filter(|s| s.key.ends_with(suffix))
            .min_by_key(|s| s.remaining())
        {
            out.push((limit, s.limit.to_string()));
            out.push((remaining, s.remaining().to_string()));
            out.push((reset, reset_text(s.reset_after)));
        }
    }
    out
}

pub async fn acquire(
    state: &State,
    config: &Config,
    agent: &Agent,
    policy: &Policy,
    tokens: u64,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let (windows, leases) = limits(config, agent, policy, tokens);
    if windows.is_empty() && leases.is_empty() {
        return Ok(());
    }
    let token_keys: Vec<String> = windows
        .iter()
        .filter(|w| w.key.ends_with(":tpm"))
        .map(|w| w.key.clone())
        .collect();
    let lease_keys: Vec<String> = leases.iter().map(|l| l.key.clone()).collect();
    let req = AcquireRequest {
        shard: agent.tenant().to_owned(),
        lease_id: ctx.request_id.clone(),
        windows,
        leases,
        // Long enough that a long stream's token count can still be corrected at its end.
        lease_ttl: config.store.reservation_ttl,
    };
    let answer = match state.limits().acquire(&req).await {
        Ok(a) => a,
        Err(e) => {
            state.store_error("acquire", &e);
            return match config.store.on_error {
                tollgate_config::OnError::Deny => Err(GateError::StoreUnavailable),
                tollgate_config::OnError::Allow => Ok(()),
            };
        }
    };
    match answer {
        Acquired::Granted { window_state } => {
            ctx.reply.rate_headers = headers(&window_state);
            ctx.rate = Some(RateHold {
                shard: req.shard.clone(),
                lease_id: ctx.request_id.clone(),
                token_keys,
                lease_keys,
                estimated_tokens: tokens,
            });
            Ok(())
        }
        Acquired::Limited {
            key,
            retry_after,
            window_state,
        } => {
            let what = key.rsplit(':').next().unwrap_or("rate");
            let whose = key.rsplit_once(':').map(|(w, _)| w).unwrap_or(&key);
            let e = GateError::RateLimited {
                message: format!(
                    "Rate limit reached for {whose} ({what}). Retry after {}.",
                    reset_text(retry_after)
                ),
                retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
                headers: headers(&window_state),
            };
            super::policy::deny(state, policy, "rate", e, ctx)
        }
    }
}

/// Corrects the token windows from the estimate to what was used.
pub async fn correct_tokens(state: &State, ctx: &Ctx, actual_tokens: u64) {
    let Some(hold) = &ctx.rate else { return };
    let delta = actual_tokens as i64 - hold.estimated_tokens as i64;
    if delta == 0 {
        return;
    }
    for key in &hold.token_keys {
        if let Err(e) = state
            .limits()
            .adjust(&hold.shard, key, MINUTE, &hold.lease_id, delta)
            .await
        {
            state.store_error("adjust", &e);
        }
    }
}

/// Returns the concurrency leases; called once, from `logging()`.
pub async fn release(state: &State, ctx: &mut Ctx) {
    if let Some(hold) = ctx.rate.take()
        && !hold.lease_keys.is_empty()
        && let Err(e) = state
            .limits()
            .release_leases(&hold.shard, &hold.lease_id, &hold.lease_keys)
            .await
    {
        state.store_error("release_leases", &e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_like_openai() {
        assert_eq!(reset_text(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_text(Duration::from_secs(7)), "7s");
        assert_eq!(reset_text(Duration::from_secs(360)), "6m0s");
    }
}
