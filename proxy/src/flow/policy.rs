//! Stage 3: the agent's policy before any money is held: model allow-list and working hours.
//!
//! In `mode: shadow` a denial is recorded (`shadow_deny`) and the request goes on.

use chrono::{Datelike, Utc};
use serde_json::Value;
use tollgate_config::{Hours, Mode, Policy};
use tollgate_types::Decision;

use super::context::Ctx;
use crate::api::Api;
use crate::error::GateError;
use crate::state::State;

/// Applies a denial: an error in enforce mode, a recorded `shadow_deny` in shadow mode.
pub fn deny(
    state: &State,
    policy: &Policy,
    stage: &str,
    e: GateError,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let decision = match policy.mode {
        Mode::Enforce => Decision::Deny,
        Mode::Shadow => Decision::ShadowDeny,
    };
    state
        .metrics
        .decisions
        .with_label_values(&[
            policy.name.as_str(),
            stage,
            decision.as_str(),
            e.code().as_str(),
        ])
        .inc();
    match policy.mode {
        Mode::Enforce => Err(e),
        Mode::Shadow => {
            ctx.verdict.shadow(e.code());
            Ok(())
        }
    }
}

pub fn check(state: &State, policy: &Policy, model: &str, ctx: &mut Ctx) -> Result<(), GateError> {
    if !policy.models.allows(model) {
        deny(
            state,
            policy,
            "policy",
            GateError::ModelNotAllowed {
                model: model.to_string(),
            },
            ctx,
        )?;
    }
    hours(state, policy, ctx)
}

/// The policy's working hours, for LLM calls and the decision API alike.
pub fn hours(state: &State, policy: &Policy, ctx: &mut Ctx) -> Result<(), GateError> {
    if let Some(hours) = &policy.hours
        && !within(hours, Utc::now())
    {
        let e = GateError::OutsideAllowedHours {
            window: describe(hours),
        };
        deny(state, policy, "policy", e, ctx)?;
    }
    Ok(())
}

/// What a Responses request asks the provider to do out of tollgate's sight.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hidden {
    /// `background: true`: answered before it is generated.
    pub background: bool,
    /// `previous_response_id`, `conversation` or a stored `prompt`: input tollgate
    /// cannot see.
    pub stored_context: bool,
}

impl Hidden {
    pub fn of(api: Api, body: &Value) -> Hidden {
        if api != Api::Responses {
            return Hidden::default();
        }
        let set = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
        Hidden {
            background: body.get("background").and_then(Value::as_bool) == Some(true),
            stored_context: set("previous_response_id") || set("conversation") || set("prompt"),
        }
    }
}

/// Refuses what the policy does not allow of [`Hidden`] work.
pub fn hidden(
    state: &State,
    policy: &Policy,
    hidden: Hidden,
    ctx: &mut Ctx,
) -> Result<(), GateError> {
    let refuse = |what: &str, switch: &str| GateError::FeatureNotAllowed {
        message: format!(
            "{what} is not allowed for this agent: tollgate cannot bound its cost (policy `responses.{switch}`)."
        ),
    };
    if hidden.background && !policy.responses.background {
        deny(
            state,
            policy,
            "policy",
            refuse("Background mode", "background"),
            ctx,
        )?;
    }
    if hidden.stored_context && !policy.responses.stored_context {
        let e = refuse(
            "Stored context (previous_response_id, conversation, prompt)",
            "stored_context",
        );
        deny(state, policy, "policy", e, ctx)?;
    }
    Ok(())
}

/// Whether `now` falls in the policy's working hours (`to` before `from` spans midnight).
pub fn within(hours: &Hours, now: chrono::DateTime<Utc>) -> bool {
    let local = now.with_timezone(&hours.tz);
    let time = local.time();
    if hours.from <= hours.to {
        hours.day_allowed(local.weekday()) && time >= hours.from && time < hours.to
    } else if time >= hours.from {
        hours.day_allowed(local.weekday())
    } else {
        // After midnight: the window belongs to the day it started on.
        time < hours.to && hours.day_allowed(local.weekday().pred())
    }
}

fn describe(hours: &Hours) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let days: Vec<&str> = NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| hours.days[*i])
        .map(|(_, d)| *d)
        .collect();
    format!(
        "on {} from {} to {} ({})",
        days.join(","),
        hours.from.format("%H:%M"),
        hours.to.format("%H:%M"),
        hours.tz.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, TimeZone};

    fn hours(from: &str, to: &str) -> Hours {
        Hours {
            days: tollgate_config::parse_days("Mon-Fri").unwrap(),
            from: NaiveTime::parse_from_str(from, "%H:%M").unwrap(),
            to: NaiveTime::parse_from_str(to, "%H:%M").unwrap(),
            tz: chrono_tz::Europe::Berlin,
        }
    }

    #[test]
    fn working_hours_follow_the_policy_time_zone() {
        let h = hours("08:00", "20:00");
        // 2026-11-23 is a Monday; 07:30 UTC is 08:30 in Berlin (CET, UTC+1).
        assert!(within(
            &h,
            Utc.with_ymd_and_hms(2026, 11, 23, 7, 30, 0).unwrap()
        ));
        assert!(!within(
            &h,
            Utc.with_ymd_and_hms(2026, 11, 23, 6, 30, 0).unwrap()
        ));
        assert!(
            !within(&h, Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()),
            "Sunday"
        );
        assert!(
            !within(&h, Utc.with_ymd_and_hms(2026, 11, 23, 19, 0, 0).unwrap()),
            "20:00 Berlin"
        );
    }

    #[test]
    fn overnight_windows_belong_to_the_day_they_start() {
        let h = hours("22:00", "06:00");
        // Friday 23:00 Berlin is allowed; Saturday 02:00 Berlin too (Friday's window).
        assert!(within(
            &h,
            Utc.with_ymd_and_hms(2026, 11, 27, 22, 0, 0).unwrap()
        ));
        assert!(within(
            &h,
            Utc.with_ymd_and_hms(2026, 11, 28, 1, 0, 0).unwrap()
        ));
        // Sunday 02:00 Berlin belongs to Saturday: not allowed.
        assert!(!within(
            &h,
            Utc.with_ymd_and_hms(2026, 11, 29, 1, 0, 0).unwrap()
        ));
    }
}
