//! Validation of the policy sub-sections: working hours, tool rules and guardrails.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveTime;

use crate::raw;
use crate::types::*;
use crate::validate::Ctx;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses `Mon-Fri`, `Mon,Wed,Fri`, `Sat-Sun`, `*`.
pub fn parse_days(text: &str) -> Option<[bool; 7]> {
    let mut days = [false; 7];
    let index = |d: &str| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d.trim()));
    for part in text.split(',') {
        let part = part.trim();
        if part == "*" {
            return Some([true; 7]);
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[index(part)?] = true,
        }
    }
    Some(days)
}

pub(crate) fn hours(ctx: &mut Ctx, path: &str, raw: raw::Hours) -> Option<Hours> {
    let days = match raw.days.as_deref() {
        None => [true; 7],
        Some(text) => parse_days(text).unwrap_or_else(|| {
            ctx.err(
                format!("{path}.days"),
                format!("`{text}` is not a day list: expected e.g. Mon-Fri or Mon,Wed,Fri"),
            );
            [true; 7]
        }),
    };
    let mut time = |field: &str, text: Option<&str>, default: &str| {
        let text = text.unwrap_or(default);
        NaiveTime::parse_from_str(text, "%H:%M")
            .ok()
            .or_else(|| {
                (text == "24:00").then(|| NaiveTime::from_hms_opt(23, 59, 59).expect("valid time"))
            })
            .unwrap_or_else(|| {
                ctx.err(
                    format!("{path}.{field}"),
                    format!("`{text}` is not a time: expected HH:MM"),
                );
                NaiveTime::MIN
            })
    };
    let from = time("from", raw.from.as_deref(), "00:00");
    let to = time("to", raw.to.as_deref(), "24:00");
    let tz = ctx
        .tz(&format!("{path}.tz"), raw.tz.as_deref())
        .unwrap_or(chrono_tz::UTC);
    Some(Hours { days, from, to, tz })
}

pub(crate) fn policy_tools(ctx: &mut Ctx, path: &str, raw: raw::Tools) -> Tools {
    let mut args = BTreeMap::new();
    for (tool, constraints) in raw.args {
        let mut compiled = BTreeMap::new();
        for (arg, pattern) in constraints {
            match regex::Regex::new(&pattern) {
                Ok(re) => {
                    compiled.insert(arg, re);
                }
                Err(e) => ctx.err(
                    format!("{path}.args.{tool}.{arg}"),
                    format!("invalid regex: {e}"),
                ),
            }
        }
        args.insert(tool, compiled);
    }
    let mut limits = BTreeMap::new();
    for (tool, l) in raw.limits {
        let lp = format!("{path}.limits.{tool}");
        if l.per_hour == Some(0) || l.per_run == Some(0) {
            ctx.err(&lp, "limits must be at least 1 (deny the tool instead)");
        }
        let cost_nanos = ctx.usd(&format!("{lp}.cost_usd"), l.cost_usd);
        limits.insert(
            tool,
            ToolLimit {
                per_hour: l.per_hour,
                per_run: l.per_run,
                cost_nanos,
            },
        );
    }
    Tools {
        allow: ctx.globs(&format!("{path}.allow"), &raw.allow),
        deny: ctx.globs(&format!("{path}.deny"), &raw.deny),
        approve: ctx.globs(&format!("{path}.approve"), &raw.approve),
        args,
        on_violation: ctx.keyword(
            &format!("{path}.on_violation"),
            raw.on_violation.as_deref(),
            |t| match t {
                "strip" => Some(OnViolation::Strip),
                "block" => Some(OnViolation::Block),
                _ => None,
            },
            "strip or block",
            OnViolation::Strip,
        ),
        limits,
        approval_ttl: ctx.duration(
            &format!("{path}.approval_ttl"),
            raw.approval_ttl.as_ref(),
            Duration::from_secs(3600),
        ),
    }
}

const ACTIONS: &str = "off, log, redact or block";

fn direction(
    ctx: &mut Ctx,
    path: &str,
    raw: Option<raw::Direction>,
    default: GuardDirection,
) -> GuardDirection {
    let raw = raw.unwrap_or_default();
    GuardDirection {
        pii: ctx.keyword(
            &format!("{path}.pii"),
            raw.pii.as_deref(),
            Action::parse,
            ACTIONS,
            default.pii,
        ),
        secrets: ctx.keyword(
            &format!("{path}.secrets"),
            raw.secrets.as_deref(),
            Action::parse,
            ACTIONS,
            default.secrets,
        ),
    }
}

/// Secrets are blocked on the way in and redacted on the way out unless a policy says
/// otherwise: a leaked credential is never the safe default. PII is off by default.
pub const DEFAULT_INPUT: GuardDirection = GuardDirection {
    pii: Action::Off,
    secrets: Action::Block,
};
pub const DEFAULT_OUTPUT: GuardDirection = GuardDirection {
    pii: Action::Off,
    secrets: Action::Redact,
};

pub(crate) fn guardrails(ctx: &mut Ctx, path: &str, raw: raw::Guardrails) -> Guardrails {
    let mut custom = Vec::new();
    for (i, rule) in raw.custom.into_iter().enumerate() {
        let rp = format!("{path}.custom[{i}]");
        let action = ctx.keyword(
            &format!("{rp}.action"),
            Some(&rule.action),
            Action::parse,
            ACTIONS,
            Action::Off,
        );
        if rule.pattern.is_none() && rule.words.is_empty() {
            ctx.err(&rp, "a custom rule needs a pattern or words");
        }
        if let Some(p) = &rule.pattern
            && let Err(e) = regex::Regex::new(p)
        {
            ctx.err(format!("{rp}.pattern"), format!("invalid regex: {e}"));
        }
        let name_ok = !rule.name.is_empty()
            && rule
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            ctx.err(
                format!("{rp}.name"),
                "expected letters, digits and _ (it becomes a metric label)",
            );
        }
        custom.push(CustomRule {
            name: rule.name,
            pattern: rule.pattern,
            words: rule.words,
            action,
        });
    }
    Guardrails {
        input: direction(ctx, &format!("{path}.input"), raw.input, DEFAULT_INPUT),
        output: direction(ctx, &format!("{path}.output"), raw.output, DEFAULT_OUTPUT),
        tool_args: direction(
            ctx,
            &format!("{path}.tool_args"),
            raw.tool_args,
            DEFAULT_INPUT,
        ),
        custom,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_days;

    #[test]
    fn day_lists() {
        let wk = [true, true, true, true, true, false, false];
        assert_eq!(parse_days("Mon-Fri"), Some(wk));
        assert_eq!(parse_days("mon-fri"), Some(wk));
        assert_eq!(
            parse_days("Sat-Sun"),
            Some([false, false, false, false, false, true, true])
        );
        assert_eq!(
            parse_days("Fri-Mon"),
            Some([true, false, false, false, true, true, true])
        );
        assert_eq!(
            parse_days("Mon,Wed"),
            Some([true, false, true, false, false, false, false])
        );
        assert_eq!(parse_days("*"), Some([true; 7]));
        assert_eq!(parse_days("Funday"), None);
    }
}
