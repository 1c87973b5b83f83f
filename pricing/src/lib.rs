//! Model prices, token estimation and the cost of a request from the provider's usage.
//!
//! Pure and synchronous: no IO, no clock. Money is integer nano-USD (1e-9 USD); prices are
//! nano-USD per million tokens. The proxy uses this crate in three places:
//!
//! 1. before forwarding: [`estimate_input_tokens`] + [`requested_output_limit`] give the
//!    worst case ([`worst_case_cost`]); when the budget only covers part of it,
//!    [`max_affordable_output`] and [`set_output_limit`] cap the request;
//! 2. while streaming: [`inject_include_usage`] asks the provider for usage, and
//!    [`StreamAccounting`] picks it up (or counts the streamed output when there is none);
//! 3. at the end: [`usage_from_response`] and [`cost`] give the exact charge.

mod bpe;
mod cost;
mod estimate;
mod limits;
mod price;
mod stream;
mod table;
mod tokenizer;
mod usage;
mod vocab;

pub use cost::{
    CacheWrites, Usage, cost, max_affordable_output, max_affordable_output_with, worst_case_cost,
    worst_case_cost_with,
};
pub use estimate::{cache_writes_requested, estimate_input_tokens, forget_counted_texts};
pub use limits::{
    inject_include_usage, is_usage_only_chunk, may_hide_output, output_limit_field,
    output_multiplier, requested_output_limit, set_output_limit, wants_usage_injection,
};
pub use price::{LongContext, NANOS_PER_USD, Price, usd_per_mtok_to_nanos};
pub use stream::{StreamAccounting, UsageSource};
pub use table::{PriceRef, PriceSource, PriceTable};
pub use tokenizer::{Tokenizer, count_tokens, tokenizer_for, warm_up};
pub use usage::{embeddings_usage_from_slice, usage_from_response};

pub use tollgate_types::Api;

/// Why a price or a price table was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PricingError {
    #[error("invalid price `{0}`: expected a finite, non-negative USD amount per million tokens")]
    InvalidPrice(String),
    #[error("invalid price table: {0}")]
    Table(String),
}
