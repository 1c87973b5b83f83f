//! Money from tokens: the exact cost of reported usage, the worst case of a request before it
//! runs, and the largest output a budget still covers.

use crate::price::{Price, Rates};

const TOKENS_PER_MTOK: i128 = 1_000_000;

/// Tokens a request used, as the provider reports them.
///
/// Subsets, never double counted: `cached_input`, `cache_write` and `cache_write_1h` are part
/// of `input`; `reasoning` is part of `output`. (Anthropic reports cache reads and writes
/// beside `input_tokens`; [`crate::usage_from_response`] folds them in.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub cached_input: u64,
    /// Input tokens written to a prompt cache billed at a premium (Anthropic 5-minute cache).
    pub cache_write: u64,
    /// Input tokens written to Anthropic's 1-hour cache.
    pub cache_write_1h: u64,
    pub output: u64,
    pub reasoning: u64,
}

/// Whether a request may write a prompt cache billed above the input rate, which raises its
/// worst-case input cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheWrites {
    #[default]
    None,
    FiveMinutes,
    OneHour,
}

/// The cost of `usage` in nano-USD, rounded up once at the end so a sequence of requests never
/// rounds below what the provider bills.
pub fn cost(price: &Price, usage: &Usage) -> i64 {
    let rates = price.rates_for(usage.input);
    let cache_writes = usage.cache_write.saturating_add(usage.cache_write_1h);
    let plain_input = usage
        .input
        .saturating_sub(usage.cached_input)
        .saturating_sub(cache_writes);
    let plain_output = usage.output.saturating_sub(usage.reasoning);
    // A provider that reports more reasoning than output is billed for the reasoning it reported.
    let micro = mul(plain_input, rates.input)
        + mul(usage.cached_input, rates.cached_input)
        + mul(usage.cache_write, rates.cache_write)
        + mul(usage.cache_write_1h, rates.cache_write_1h)
        + mul(plain_output, rates.output)
        + mul(usage.reasoning, rates.reasoning);
    to_nanos_ceil(micro)
}

/// The most a request can cost: every input token at the full input rate, every output token
/// at the dearer of the output and reasoning rates. Assumes no cache writes; see
/// [`worst_case_cost_with`].
pub fn worst_case_cost(price: &Price, input_tokens: u64, output_tokens: u64) -> i64 {
    worst_case_cost_with(price, input_tokens, output_tokens, CacheWrites::None)
}

/// [`worst_case_cost`] for a request that may write a premium-billed prompt cache
/// (see [`crate::cache_writes_requested`]): input is priced at the dearest rate it can hit.
pub fn worst_case_cost_with(
    price: &Price,
    input_tokens: u64,
    output_tokens: u64,
    writes: CacheWrites,
) -> i64 {
    let rates = price.rates_for(input_tokens);
    to_nanos_ceil(
        mul(input_tokens, worst_input_rate(&rates, writes))
            + mul(output_tokens, worst_output_rate(&rates)),
    )
}

/// The largest output such that `worst_case_cost(price, input_tokens, output) <= budget_nanos`;
/// 0 when even the input alone is over budget, `u64::MAX` when output is free.
pub fn max_affordable_output(price: &Price, input_tokens: u64, budget_nanos: i64) -> u64 {
    max_affordable_output_with(price, input_tokens, budget_nanos, CacheWrites::None)
}

/// [`max_affordable_output`] for a request that may write a premium-billed prompt cache.
pub fn max_affordable_output_with(
    price: &Price,
    input_tokens: u64,
    budget_nanos: i64,
    writes: CacheWrites,
) -> u64 {
    if budget_nanos < 0 {
        return 0;
    }
    let rates = price.rates_for(input_tokens);
    // ceil(x / 1e6) <= budget  <=>  x <= budget * 1e6, since budget is an integer.
    let room = budget_nanos as i128 * TOKENS_PER_MTOK
        - mul(input_tokens, worst_input_rate(&rates, writes));
    if room < 0 {
        return 0;
    }
    let out_rate = worst_output_rate(&rates) as i128;
    if out_rate <= 0 {
        return u64::MAX;
    }
    u64::try_from(room / out_rate).unwrap_or(u64::MAX)
}

fn worst_input_rate(rates: &Rates, writes: CacheWrites) -> i64 {
    let write = match writes {
        CacheWrites::None => 0,
        CacheWrites::FiveMinutes => rates.cache_write,
        CacheWrites::OneHour => rates.cache_write.max(rates.cache_write_1h),
    };
    rates.input.max(write)
}

fn worst_output_rate(rates: &Rates) -> i64 {
    rates.output.max(rates.reasoning)
}

/// tokens × (nano-USD per million tokens): nano-USD × 1e6.
fn mul(tokens: u64, rate: i64) -> i128 {
    tokens as i128 * rate as i128
}

fn to_nanos_ceil(micro_nanos: i128) -> i64 {
    let nanos = if micro_nanos <= 0 {
        0
    } else {
        (micro_nanos + TOKENS_PER_MTOK - 1) / TOKENS_PER_MTOK
    };
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::LongContext;
    use proptest::prelude::*;

    fn gpt4o() -> Price {
        let mut p = Price::from_usd_per_mtok(2.5, 10.0).unwrap();
        p.cached_input = 1_250_000_000;
        p
    }

    fn sonnet() -> Price {
        let mut p = Price::from_usd_per_mtok(3.0, 15.0).unwrap();
        p.cached_input = 300_000_000;
        p.cache_write = 3_750_000_000;
        p.cache_write_1h = 6_000_000_000;
        p.long_context = Some(LongContext {
            above_input_tokens: 200_000,
            input: 6_000_000_000,
            cached_input: 600_000_000,
            cache_write: 7_500_000_000,
            cache_write_1h: 12_000_000_000,
            output: 22_500_000_000,
            reasoning: 22_500_000_000,
        });
        p
    }

    #[test]
    fn cost_table() {
        struct Case {
            name: &'static str,
            price: Price,
            usage: Usage,
            nanos: i64,
        }
        let cases = [
            Case {
                name: "1M input + 1M output of gpt-4o is $12.50",
                price: gpt4o(),
                usage: Usage {
                    input: 1_000_000,
                    output: 1_000_000,
                    ..Default::default()
                },
                nanos: 12_500_000_000,
            },
            Case {
                name: "cached tokens are a subset of input, billed at the cached rate",
                price: gpt4o(),
                usage: Usage {
                    input: 2000,
                    cached_input: 1024,
                    output: 100,
                    ..Default::default()
                },
                // 976 * 2.5 + 1024 * 1.25 + 100 * 10 = 2440 + 1280 + 1000 = 4720 micro-USD
                nanos: 4_720_000,
            },
            Case {
                name: "reasoning is a subset of output, not added again",
                price: gpt4o(),
                usage: Usage {
                    input: 0,
                    output: 500,
                    reasoning: 400,
                    ..Default::default()
                },
                nanos: 5_000_000,
            },
            Case {
                name: "one token rounds up to a whole nano-USD",
                price: Price::from_usd_per_mtok(0.15, 0.6).unwrap(),
                usage: Usage {
                    input: 1,
                    ..Default::default()
                },
                nanos: 150,
            },
            Case {
                name: "a fraction of a nano-USD rounds up",
                price: Price::from_usd_per_mtok(0.0001, 0.0).unwrap(),
                usage: Usage {
                    input: 1,
                    ..Default::default()
                },
                nanos: 1,
            },
            Case {
                name: "anthropic cache writes at 1.25x and 2x, reads at 0.1x",
                price: sonnet(),
                usage: Usage {
                    input: 10_000,
                    cached_input: 4000,
                    cache_write: 2000,
                    cache_write_1h: 1000,
                    output: 100,
                    reasoning: 0,
                },
                // 3000*3 + 4000*0.3 + 2000*3.75 + 1000*6 + 100*15 = 9000+1200+7500+6000+1500
                nanos: 25_200_000,
            },
            Case {
                name: "long-context tier prices the whole request",
                price: sonnet(),
                usage: Usage {
                    input: 200_001,
                    output: 1000,
                    ..Default::default()
                },
                nanos: 200_001 * 6_000 + 1000 * 22_500,
            },
            Case {
                name: "empty usage is free",
                price: gpt4o(),
                usage: Usage::default(),
                nanos: 0,
            },
        ];
        for case in cases {
            assert_eq!(cost(&case.price, &case.usage), case.nanos, "{}", case.name);
        }
    }

    #[test]
    fn worst_case_uses_dearest_rates() {
        let p = sonnet();
        assert_eq!(worst_case_cost(&p, 1000, 100), 1000 * 3000 + 100 * 15_000);
        assert_eq!(
            worst_case_cost_with(&p, 1000, 0, CacheWrites::FiveMinutes),
            3_750_000
        );
        assert_eq!(
            worst_case_cost_with(&p, 1000, 0, CacheWrites::OneHour),
            6_000_000
        );
        let mut reasoning_dearer = gpt4o();
        reasoning_dearer.reasoning = 20_000_000_000;
        assert_eq!(worst_case_cost(&reasoning_dearer, 0, 10), 200_000);
    }

    #[test]
    fn affordable_output_edges() {
        let p = gpt4o();
        assert_eq!(max_affordable_output(&p, 1000, 0), 0);
        assert_eq!(max_affordable_output(&p, 1000, -5), 0);
        // input costs 2_500_000 nanos; 100_000 more buys 10 output tokens at 10_000 each.
        assert_eq!(max_affordable_output(&p, 1000, 2_600_000), 10);
        assert_eq!(max_affordable_output(&p, 1000, 2_609_999), 10);
        let free = Price::from_usd_per_mtok(0.1, 0.0).unwrap();
        assert_eq!(max_affordable_output(&free, 10, 1_000), u64::MAX);
        assert_eq!(max_affordable_output(&free, 10, 999), 0);
    }

    fn price_strategy() -> impl Strategy<Value = Price> {
        (
            0i64..200_000_000_000,
            0i64..600_000_000_000,
            0i64..600_000_000_000,
            proptest::option::of(1u64..300_000),
        )
            .prop_map(|(input, output, reasoning, tier)| {
                let mut p = Price::from_usd_per_mtok(0.0, 0.0).unwrap();
                p.input = input;
                p.cached_input = input / 10;
                p.cache_write = input + input / 4;
                p.cache_write_1h = input * 2;
                p.output = output;
                p.reasoning = reasoning;
                p.long_context = tier.map(|above| LongContext {
                    above_input_tokens: above,
                    input: input * 2,
                    cached_input: input / 5,
                    cache_write: input * 3,
                    cache_write_1h: input * 4,
                    output: output * 3 / 2,
                    reasoning: reasoning * 3 / 2,
                });
                p
            })
    }

    proptest! {
        #[test]
        fn affordable_output_is_the_largest_within_budget(
            price in price_strategy(),
            input in 0u64..2_000_000,
            budget in 0i64..50_000_000_000,
        ) {
            let out = max_affordable_output(&price, input, budget);
            if worst_case_cost(&price, input, 0) > budget {
                prop_assert_eq!(out, 0);
            } else if out != u64::MAX {
                prop_assert!(worst_case_cost(&price, input, out) <= budget);
                prop_assert!(worst_case_cost(&price, input, out + 1) > budget);
            }
        }

        #[test]
        fn actual_cost_never_exceeds_worst_case(
            price in price_strategy(),
            input in 0u64..2_000_000,
            cached_pct in 0u64..=100,
            output in 0u64..200_000,
            reasoning_pct in 0u64..=100,
        ) {
            let usage = Usage {
                input,
                cached_input: input * cached_pct / 100,
                output,
                reasoning: output * reasoning_pct / 100,
                ..Default::default()
            };
            prop_assert!(cost(&price, &usage) <= worst_case_cost(&price, input, output));
        }

        #[test]
        fn cache_writes_never_exceed_their_worst_case(
            price in price_strategy(),
            input in 0u64..2_000_000,
            write_pct in 0u64..=100,
            output in 0u64..100_000,
        ) {
            let usage = Usage {
                input,
                cache_write_1h: input * write_pct / 100,
                output,
                ..Default::default()
            };
            prop_assert!(cost(&price, &usage) <= worst_case_cost_with(&price, input, output, CacheWrites::OneHour));
        }
    }
}
