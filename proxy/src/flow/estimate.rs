//! Stage 5: what the request can cost at most, and at least with a minimal answer.
//!
//! tollgate always forwards an explicit output limit equal to what it reserved for, so the
//! provider can never produce more than was paid for, even when the client set none.

use tollgate_config::Policy;
use tollgate_pricing::{self as pricing, Price};

use super::context::Estimate;
use super::policy::Hidden;
use crate::api::Request;
use crate::error::GateError;
use crate::state::Runtime;

/// Output tokens assumed for a model whose maximum output is not published.
pub const DEFAULT_MAX_OUTPUT: u64 = 16_384;

/// The model's name for metrics and the audit record: the price table's name, or the
/// request's model when the config names it exactly, else `unpriced`. Never free request
/// text beyond that, so labels stay bounded and nothing a client typed lands in the trail.
pub fn model_label(rt: &Runtime, model: &str) -> String {
    if let Some(found) = rt.prices.lookup(model) {
        return found.name.to_string();
    }
    let configured = rt
        .config
        .providers
        .iter()
        .any(|p| p.models.literals().any(|m| m == model))
        || rt
            .config
            .policies
            .values()
            .any(|p| p.models.allow.literals().any(|m| m == model));
    if configured {
        model.to_string()
    } else {
        "unpriced".to_string()
    }
}

pub fn price_of(rt: &Runtime, model: &str) -> Result<Price, GateError> {
    if let Some(found) = rt.prices.lookup(model) {
        return Ok(found.price.clone());
    }
    rt.unknown_price
        .clone()
        .ok_or_else(|| GateError::ModelNotAllowed {
            model: model.to_string(),
        })
}

/// Input assumed for stored context of a model whose context window the price table does
/// not know: the largest windows models have today.
const UNKNOWN_CONTEXT_WINDOW: u64 = 1_000_000;

pub fn estimate(
    rt: &Runtime,
    policy: &Policy,
    req: &mut Request,
    hidden: Hidden,
) -> Result<Estimate, GateError> {
    let price = price_of(rt, &req.model).map_err(|_| {
        GateError::invalid(
            format!(
                "tollgate has no price for the model `{}`, and pricing.unknown_model is `deny`: add it to pricing.overrides.",
                req.model
            ),
            Some("model"),
        )
    })?;
    let mut input_tokens = pricing::estimate_input_tokens(req.api, &req.model, &req.body);
    let multiplier = pricing::output_multiplier(req.api, &req.body);
    let output_tokens = match pricing::requested_output_limit(req.api, &req.body) {
        Some(n) => n,
        None => {
            let n = price
                .max_output_tokens
                .map(u64::from)
                .unwrap_or(DEFAULT_MAX_OUTPUT);
            pricing::set_output_limit(req.api, &req.model, &mut req.body, n);
            n
        }
    };
    if hidden.stored_context {
        // Hidden input may fill whatever of the context window the output leaves.
        let window = price
            .context_window
            .map(u64::from)
            .unwrap_or(UNKNOWN_CONTEXT_WINDOW);
        input_tokens = input_tokens.max(window.saturating_sub(output_tokens));
    }
    let worst_nanos = pricing::worst_case_cost(
        &price,
        input_tokens,
        output_tokens.saturating_mul(multiplier),
    );
    let min_output = output_tokens.min(u64::from(policy.min_output_tokens));
    let min_nanos =
        pricing::worst_case_cost(&price, input_tokens, min_output.saturating_mul(multiplier));
    Ok(Estimate {
        price,
        input_tokens,
        output_tokens,
        worst_nanos,
        min_nanos,
    })
}
