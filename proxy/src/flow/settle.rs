//! Stage 10: the hold becomes the actual cost (commit) or nothing (release), exactly once.
//!
//! Store errors here cannot be answered to the agent any more; they are counted, and the
//! hold lapses at its TTL, when the reaper releases it.

use tollgate_pricing::{self as pricing, Usage};

use tollgate_budget::CommitOutcome;

use super::context::{Ctx, Money};
use crate::reason::Code;
use crate::state::PendingCommit;
use crate::state::State;

/// Charges `usage` at the request's price and commits it.
pub async fn commit(state: &State, ctx: &mut Ctx, usage: Usage) {
    let Some(est) = &ctx.money.estimate else {
        return;
    };
    let actual = pricing::cost(&est.price, &usage);
    super::limits::correct_tokens(state, ctx, usage.input + usage.output).await;
    commit_at(state, ctx, usage, actual).await
}

/// Charges the whole hold, or what `seen` costs if that is more: the provider may have
/// generated output tollgate never saw (the agent left first, or the answer may hide its
/// reasoning and ended before the provider reported usage). Without a hold (shadow mode,
/// `on_error: allow`) the worst case is what the hold would have been. The token windows
/// keep the estimate they were charged at stage 5b.
pub async fn commit_hold(state: &State, ctx: &mut Ctx, seen: Usage) {
    let Some(est) = &ctx.money.estimate else {
        return;
    };
    let held = match &ctx.money.hold {
        Some(hold) => hold.granted,
        None => est.worst_nanos,
    };
    let actual = pricing::cost(&est.price, &seen).max(held);
    ctx.verdict.push(Code::HoldCharged);
    commit_at(state, ctx, seen, actual).await
}

async fn commit_at(state: &State, ctx: &mut Ctx, usage: Usage, actual: i64) {
    ctx.money.usage = Some(usage);
    ctx.money.actual_nanos = Some(actual);
    match ctx.money.hold.take() {
        Some(hold) => {
            if let Err(e) = state.ledger().commit(&hold.tenant, &hold.id, actual).await {
                state.store_error("commit", &e);
                if e.is_unavailable() {
                    ctx.verdict.push(Code::CommitDeferred);
                    state
                        .pending_commits
                        .lock()
                        .expect("pending commits")
                        .push(PendingCommit {
                            tenant: hold.tenant,
                            id: hold.id,
                            actual,
                            scopes: ctx.money.spend_scopes.clone(),
                            held: true,
                        });
                } else {
                    ctx.verdict.push(Code::CommitFailed);
                }
            }
        }
        // Forwarded without a hold (shadow mode, or the store was down with
        // `on_error: allow`): the money was still spent and is recorded as such.
        None if !ctx.money.spend_scopes.is_empty() => {
            if let Err(e) = state
                .ledger()
                .record_spend(&ctx.request_id, &ctx.money.spend_scopes, actual)
                .await
            {
                state.store_error("record_spend", &e);
                if e.is_unavailable() {
                    // Recorded once the store is back: the retry finds no hold and records
                    // the spend on its own.
                    ctx.verdict.push(Code::SpendDeferred);
                    let tenant =
                        tollgate_budget::tenant_of(&ctx.money.spend_scopes[0].scope).to_string();
                    state
                        .pending_commits
                        .lock()
                        .expect("pending commits")
                        .push(PendingCommit {
                            tenant,
                            id: ctx.request_id.clone(),
                            actual,
                            scopes: ctx.money.spend_scopes.clone(),
                            held: false,
                        });
                } else {
                    ctx.verdict.push(Code::SpendUnrecorded);
                }
            }
        }
        None => {}
    }
}

/// Retries the commits the store could not take; those that land leave the queue. A hold
/// that lapsed and was released meanwhile gets its spend recorded without a hold. A hold
/// the store no longer knows was settled by the first try, whose answer was lost: LLM
/// holds are forgotten once settled (`forget_settled`), while a lapsed one is kept as
/// expired for the store's retention.
pub async fn retry_pending(state: &State) {
    let pending = std::mem::take(&mut *state.pending_commits.lock().expect("pending commits"));
    let mut still = Vec::new();
    for p in pending {
        let outcome = match state.ledger().commit(&p.tenant, &p.id, p.actual).await {
            Ok(CommitOutcome::Committed { .. }) => Ok(()),
            Ok(CommitOutcome::NotFound) if p.held => Ok(()),
            Ok(CommitOutcome::AlreadyReleased | CommitOutcome::NotFound) => state
                .ledger()
                .record_spend(&format!("{}:late", p.id), &p.scopes, p.actual)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => tracing::info!(reservation = %p.id, "deferred commit recorded"),
            Err(e) if e.is_unavailable() => still.push(p),
            Err(e) => {
                state.store_error("commit_retry", &e);
                tracing::error!(reservation = %p.id, error = %e, "deferred commit dropped");
            }
        }
    }
    if !still.is_empty() {
        state
            .pending_commits
            .lock()
            .expect("pending commits")
            .extend(still);
    }
}

/// Keeps the hold of a long stream alive for another `ttl`.
pub async fn extend(state: &State, ctx: &mut Ctx, ttl: std::time::Duration) {
    if let Some(hold) = &ctx.money.hold
        && let Err(e) = state.ledger().extend(&hold.tenant, &hold.id, ttl).await
    {
        state.store_error("extend", &e);
    }
}

/// Drops the hold without spending: nothing was generated.
pub async fn release(state: &State, ctx: &mut Ctx) {
    if let Some(hold) = ctx.money.hold.take()
        && let Err(e) = state.ledger().release(&hold.tenant, &hold.id).await
    {
        state.store_error("release", &e);
        ctx.verdict.push(Code::ReleaseFailed);
    }
}

/// The usage of a provider answer that carried none: the input estimate, and the output
/// counted in the answer's text.
pub fn counted(money: &Money, model: &str, output_text: &str) -> Usage {
    Usage {
        input: money.input_tokens(),
        output: pricing::count_tokens(model, output_text),
        ..Usage::default()
    }
}

/// The prompt alone: what a provider certainly processed when its answer was lost.
pub fn input_only(money: &Money) -> Usage {
    Usage {
        input: money.input_tokens(),
        ..Usage::default()
    }
}

/// The generated text of a whole response in any of the supported shapes, for counting
/// when the provider reported no usage.
pub fn output_text(body: &serde_json::Value) -> String {
    let mut out = String::new();
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for choice in body["choices"].as_array().into_iter().flatten() {
        out += &text(choice.pointer("/message/content"));
        out += &text(choice.get("text"));
        for call in choice
            .pointer("/message/tool_calls")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            out += &text(call.pointer("/function/name"));
            out += &text(call.pointer("/function/arguments"));
        }
    }
    for item in body["output"].as_array().into_iter().flatten() {
        out += &text(item.get("arguments"));
        for part in item["content"].as_array().into_iter().flatten() {
            out += &text(part.get("text"));
        }
    }
    for block in body["content"].as_array().into_iter().flatten() {
        out += &text(block.get("text"));
        if let Some(input) = block.get("input") {
            out += &input.to_string();
        }
    }
    out
}
