//! What one model costs: rates in nano-USD per million tokens, and the conversion from the
//! decimal USD that price pages and config files use.

use crate::PricingError;

/// Nano-USD in one USD.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// The rates for one model, each in nano-USD per million tokens (so `$2.50 / MTok` is
/// `2_500_000_000`).
///
/// `cached_input` is what a prompt-cache hit costs, `cache_write` / `cache_write_1h` what
/// writing the cache costs where the provider bills that at a premium (Anthropic's 5-minute
/// and 1-hour cache), and `reasoning` the rate of hidden reasoning tokens (the output rate at
/// every provider in the shipped table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub input: i64,
    pub cached_input: i64,
    pub cache_write: i64,
    pub cache_write_1h: i64,
    pub output: i64,
    pub reasoning: i64,
    /// The most output tokens the model produces in one response, where published.
    pub max_output_tokens: Option<u32>,
    /// Input plus output tokens the model accepts, where published.
    pub context_window: Option<u32>,
    /// A higher tier that applies to the whole request once the prompt is longer than a
    /// threshold (Gemini 2.5 Pro, Claude Sonnet 4 / 4.5 past 200k input tokens).
    pub long_context: Option<LongContext>,
}

/// The rates of a long-prompt tier; same units as [`Price`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongContext {
    /// The tier applies when the request's input tokens (cached ones included) exceed this.
    pub above_input_tokens: u64,
    pub input: i64,
    pub cached_input: i64,
    pub cache_write: i64,
    pub cache_write_1h: i64,
    pub output: i64,
    pub reasoning: i64,
}

/// The rates that apply to one request, after the long-context tier was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rates {
    pub input: i64,
    pub cached_input: i64,
    pub cache_write: i64,
    pub cache_write_1h: i64,
    pub output: i64,
    pub reasoning: i64,
}

impl Price {
    /// A price with only input and output rates (decimal USD per million tokens), as the
    /// config's `pricing.overrides` and `unknown_model` give them: cached input, cache writes
    /// and reasoning are billed like plain input and output.
    pub fn from_usd_per_mtok(input: f64, output: f64) -> Result<Price, PricingError> {
        let input = usd_per_mtok_to_nanos(input)?;
        let output = usd_per_mtok_to_nanos(output)?;
        Ok(Price {
            input,
            cached_input: input,
            cache_write: input,
            cache_write_1h: input,
            output,
            reasoning: output,
            max_output_tokens: None,
            context_window: None,
            long_context: None,
        })
    }

    /// The rates for a request whose prompt has `input_tokens` tokens, cached ones included.
    pub(crate) fn rates_for(&self, input_tokens: u64) -> Rates {
        match &self.long_context {
            Some(tier) if input_tokens > tier.above_input_tokens => Rates {
                input: tier.input,
                cached_input: tier.cached_input,
                cache_write: tier.cache_write,
                cache_write_1h: tier.cache_write_1h,
                output: tier.output,
                reasoning: tier.reasoning,
            },
            _ => Rates {
                input: self.input,
                cached_input: self.cached_input,
                cache_write: self.cache_write,
                cache_write_1h: self.cache_write_1h,
                output: self.output,
                reasoning: self.reasoning,
            },
        }
    }
}

/// Converts decimal USD per million tokens to integer nano-USD per million tokens.
///
/// Exact for every price with at most nine decimals below $1M/MTok: an f64 carries 15
/// significant digits, and the result is rounded to the nearest nano-USD.
pub fn usd_per_mtok_to_nanos(usd: f64) -> Result<i64, PricingError> {
    if !usd.is_finite() || usd < 0.0 {
        return Err(PricingError::InvalidPrice(usd.to_string()));
    }
    let nanos = (usd * NANOS_PER_USD as f64).round();
    if nanos > i64::MAX as f64 / 2.0 {
        return Err(PricingError::InvalidPrice(usd.to_string()));
    }
    Ok(nanos as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_prices_convert_exactly() {
        let cases = [
            (2.5, 2_500_000_000),
            (0.075, 75_000_000),
            (0.1, 100_000_000),
            (0.028, 28_000_000),
            (0.0187, 18_700_000),
            (150.0, 150_000_000_000),
            (0.0, 0),
        ];
        for (usd, nanos) in cases {
            assert_eq!(usd_per_mtok_to_nanos(usd).unwrap(), nanos, "{usd}");
        }
    }

    #[test]
    fn negative_or_nan_prices_are_refused() {
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e12] {
            assert!(usd_per_mtok_to_nanos(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_context_tier_applies_only_past_its_threshold() {
        let mut price = Price::from_usd_per_mtok(1.25, 10.0).unwrap();
        price.long_context = Some(LongContext {
            above_input_tokens: 200_000,
            input: 2_500_000_000,
            cached_input: 250_000_000,
            cache_write: 2_500_000_000,
            cache_write_1h: 2_500_000_000,
            output: 15_000_000_000,
            reasoning: 15_000_000_000,
        });
        assert_eq!(price.rates_for(200_000).input, 1_250_000_000);
        assert_eq!(price.rates_for(200_001).input, 2_500_000_000);
        assert_eq!(price.rates_for(200_001).output, 15_000_000_000);
    }
}
