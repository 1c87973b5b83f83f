//! The model price table: the shipped TOML data parsed once, config overrides on top, and the
//! lookup that maps what a client sends (`openai/gpt-4o-2024-08-06`) to a priced model.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use crate::PricingError;
use crate::price::{LongContext, Price, usd_per_mtok_to_nanos};

const BUILTIN_TOML: &str = include_str!("../data/prices.toml");

static BUILTIN: LazyLock<PriceTable> = LazyLock::new(|| {
    // The data file ships inside the binary and a unit test parses it, so a failure here is
    // a build defect, not a runtime condition.
    PriceTable::from_toml(BUILTIN_TOML).expect("pricing/data/prices.toml is valid")
});

/// Where a price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    Builtin,
    Override,
}

/// A priced model found by [`PriceTable::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceRef<'a> {
    /// The table's name for the model (the entry's `name`, or the override key).
    pub name: &'a str,
    pub price: &'a Price,
    pub source: PriceSource,
}

#[derive(Debug)]
struct Entry {
    name: String,
    price: Price,
}

/// Model prices: the built-in table plus config overrides. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PriceTable {
    date: Arc<str>,
    builtin: Arc<[Entry]>,
    builtin_index: Arc<HashMap<String, usize>>,
    overrides: Arc<HashMap<String, (String, Price)>>,
}

impl PriceTable {
    /// The table shipped with tollgate (`pricing/data/prices.toml`), parsed on first use.
    pub fn builtin() -> PriceTable {
        BUILTIN.clone()
    }

    /// Parses a table in the format of `pricing/data/prices.toml`.
    pub fn from_toml(text: &str) -> Result<PriceTable, PricingError> {
        let raw: RawTable =
            toml::from_str(text).map_err(|e| PricingError::Table(e.message().to_string()))?;
        let mut entries = Vec::with_capacity(raw.model.len());
        let mut index = HashMap::new();
        for model in raw.model {
            let name = normalize(&model.name);
            let price = model.to_price()?;
            let position = entries.len();
            for key in
                std::iter::once(name.clone()).chain(model.aliases.iter().map(|a| normalize(a)))
            {
                if index.insert(key.clone(), position).is_some() {
                    return Err(PricingError::Table(format!(
                        "model `{key}` is listed twice"
                    )));
                }
            }
            entries.push(Entry { name, price });
        }
        Ok(PriceTable {
            date: raw.meta.date.into(),
            builtin: entries.into(),
            builtin_index: Arc::new(index),
            overrides: Arc::new(HashMap::new()),
        })
    }

    /// The same table with `overrides` taking precedence (config `pricing.overrides`). Keys are
    /// model ids, matched with the same normalisation as [`PriceTable::lookup`].
    pub fn with_overrides(
        self,
        overrides: impl IntoIterator<Item = (String, Price)>,
    ) -> PriceTable {
        let mut map = (*self.overrides).clone();
        for (name, price) in overrides {
            map.insert(normalize(&name), (name, price));
        }
        PriceTable {
            overrides: Arc::new(map),
            ..self
        }
    }

    /// The date the built-in prices were last checked.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// Every built-in model name (not aliases), for listing and tests.
    pub fn builtin_names(&self) -> impl Iterator<Item = &str> {
        self.builtin.iter().map(|e| e.name.as_str())
    }

    /// Finds the price for a model id as a client sends it. Case-insensitive; tries the id,
    /// then without provider prefixes (`openai/`, `accounts/fireworks/models/`,
    /// `us.anthropic.`), then without snapshot suffixes (`-2024-08-06`, `-20250514`, `-0613`,
    /// `-latest`, `-preview`, `@20241022`, `-v1:0`), one at a time. Overrides win at each step,
    /// and an override of a built-in model also prices that model's aliases; a snapshot with a
    /// built-in price of its own (`gpt-4o-2024-05-13`) keeps it unless overridden by name.
    pub fn lookup(&self, model: &str) -> Option<PriceRef<'_>> {
        for candidate in candidates(model) {
            if let Some((name, price)) = self.overrides.get(&candidate) {
                return Some(PriceRef {
                    name,
                    price,
                    source: PriceSource::Override,
                });
            }
            if let Some(&i) = self.builtin_index.get(&candidate) {
                let entry = &self.builtin[i];
                // An override of the family also prices its aliases.
                if let Some((name, price)) = self.overrides.get(&entry.name) {
                    return Some(PriceRef {
                        name,
                        price,
                        source: PriceSource::Override,
                    });
                }
                return Some(PriceRef {
                    name: &entry.name,
                    price: &entry.price,
                    source: PriceSource::Builtin,
                });
            }
        }
        None
    }
}

pub(crate) fn normalize(model: &str) -> String {
    model.trim().to_ascii_lowercase()
}

/// The ids to try for `model`, most specific first.
fn candidates(model: &str) -> Vec<String> {
    let full = normalize(model);
    let mut out = vec![full.clone()];
    let mut bare = full.rsplit('/').next().unwrap_or(&full).to_string();
    // Bedrock-style ids: `us.anthropic.claude-3-5-sonnet-20240620-v1:0`.
    if let Some(pos) = bare.find("anthropic.") {
        bare = bare[pos + "anthropic.".len()..].to_string();
    }
    push_unique(&mut out, bare.clone());
    let mut current = bare;
    while let Some(shorter) = strip_one_suffix(&current) {
        push_unique(&mut out, shorter.clone());
        current = shorter;
    }
    out
}

fn push_unique(out: &mut Vec<String>, s: String) {
    if !s.is_empty() && !out.contains(&s) {
        out.push(s);
    }
}

/// Removes one snapshot/version suffix, or returns None when there is none left.
fn strip_one_suffix(s: &str) -> Option<String> {
    if let Some(pos) = s.find(['@', ':']) {
        return Some(s[..pos].to_string());
    }
    for word in ["-latest", "-preview", "-exp"] {
        if let Some(rest) = s.strip_suffix(word) {
            return Some(rest.to_string());
        }
    }
    let segments: Vec<&str> = s.split('-').collect();
    let n = segments.len();
    let digits =
        |seg: &str, len: usize| seg.len() == len && seg.bytes().all(|b| b.is_ascii_digit());
    // -2024-08-06
    if n >= 4
        && digits(segments[n - 3], 4)
        && digits(segments[n - 2], 2)
        && digits(segments[n - 1], 2)
    {
        return Some(segments[..n - 3].join("-"));
    }
    if n >= 2 {
        let last = segments[n - 1];
        // -20250514, -0613, -002 (Gemini), -05-06 (Gemini previews), -v1 (Bedrock)
        let version = last.len() > 1
            && last.starts_with('v')
            && last[1..].bytes().all(|b| b.is_ascii_digit());
        if digits(last, 8) || digits(last, 4) || digits(last, 3) || version {
            return Some(segments[..n - 1].join("-"));
        }
        if n >= 3 && digits(last, 2) && digits(segments[n - 2], 2) {
            return Some(segments[..n - 2].join("-"));
        }
    }
    None
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    meta: RawMeta,
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    date: String,
    #[allow(dead_code)]
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[allow(dead_code)]
    provider: String,
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
    reasoning: Option<f64>,
    max_output_tokens: Option<u32>,
    context_window: Option<u32>,
    long_context: Option<RawLongContext>,
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLongContext {
    above_input_tokens: u64,
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
}

impl RawModel {
    fn to_price(&self) -> Result<Price, PricingError> {
        let nanos = usd_per_mtok_to_nanos;
        let input = nanos(self.input)?;
        let output = nanos(self.output)?;
        let cached_input = self.cached_input.map(nanos).transpose()?.unwrap_or(input);
        let cache_write = self.cache_write.map(nanos).transpose()?.unwrap_or(input);
        let cache_write_1h = self
            .cache_write_1h
            .map(nanos)
            .transpose()?
            .unwrap_or(cache_write);
        let reasoning = self.reasoning.map(nanos).transpose()?.unwrap_or(output);
        let long_context = match &self.long_context {
            None => None,
            Some(tier) => {
                let tier_input = nanos(tier.input)?;
                let tier_output = nanos(tier.output)?;
                // Absent tier cache rates keep their ratio to the input rate.
                let scale = |base: i64| -> i64 {
                    if input == 0 {
                        base
                    } else {
                        ((base as i128 * tier_input as i128 + input as i128 - 1) / input as i128)
                            as i64
                    }
                };
                let tier_write = tier
                    .cache_write
                    .map(nanos)
                    .transpose()?
                    .unwrap_or(scale(cache_write));
                Some(LongContext {
                    above_input_tokens: tier.above_input_tokens,
                    input: tier_input,
                    cached_input: tier
                        .cached_input
                        .map(nanos)
                        .transpose()?
                        .unwrap_or(scale(cached_input)),
                    cache_write: tier_write,
                    cache_write_1h: tier
                        .cache_write_1h
                        .map(nanos)
                        .transpose()?
                        .unwrap_or(scale(cache_write_1h)),
                    output: tier_output,
                    reasoning: if reasoning == output {
                        tier_output
                    } else {
                        scale(reasoning)
                    },
                })
            }
        };
        Ok(Price {
            input,
            cached_input,
            cache_write,
            cache_write_1h,
            output,
            reasoning,
            max_output_tokens: self.max_output_tokens,
            context_window: self.context_window,
            long_context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USD: i64 = 1_000_000_000;

    #[test]
    fn builtin_table_parses_and_is_dated() {
        let table = PriceTable::builtin();
        assert!(table.builtin_names().count() > 50);
        assert_eq!(table.date().len(), "2026-11-22".len());
    }

    #[test]
    fn lookup_resolves_aliases_snapshots_prefixes_and_case() {
        let table = PriceTable::builtin();
        let cases = [
            ("gpt-4o", "gpt-4o"),
            ("GPT-4o", "gpt-4o"),
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("openai/gpt-4o", "gpt-4o"),
            ("openai/gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
            ("gpt-4-0613", "gpt-4"),
            ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
            ("gpt-35-turbo", "gpt-3.5-turbo"),
            ("o3-2025-04-16", "o3"),
            ("o4-mini-2025-04-16", "o4-mini"),
            ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
            ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
            ("claude-opus-4-1-20250805", "claude-opus-4-1"),
            (
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "claude-3-7-sonnet",
            ),
            ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
            ("gemini-2.5-pro-preview-05-06", "gemini-2.5-pro"),
            ("models/gemini-2.0-flash-001", "gemini-2.0-flash"),
            ("gemini-1.5-flash-002", "gemini-1.5-flash"),
            ("mistral-large-latest", "mistral-large-latest"),
            ("mistral-large-2411", "mistral-large-2411"),
            ("codestral-2501", "codestral-latest"),
            ("deepseek/deepseek-chat", "deepseek-chat"),
            (
                "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo",
                "meta-llama-3.1-405b-instruct-turbo",
            ),
            ("groq/llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
            (
                "Qwen/Qwen2.5-72B-Instruct-Turbo",
                "qwen2.5-72b-instruct-turbo",
            ),
            ("text-embedding-3-small", "text-embedding-3-small"),
        ];
        for (id, want) in cases {
            let got = table.lookup(id).unwrap_or_else(|| panic!("{id} not found"));
            assert_eq!(got.name, want, "{id}");
            assert_eq!(got.source, PriceSource::Builtin);
        }
    }

    #[test]
    fn lookup_never_falls_back_to_a_different_model() {
        let table = PriceTable::builtin();
        for id in [
            "mock-echo",
            "gpt-4o-nonexistent",
            "gpt",
            "",
            "my-local-model",
            "claude",
        ] {
            assert!(table.lookup(id).is_none(), "{id} should be unknown");
        }
        // A family member must not resolve to its sibling by prefix.
        assert_eq!(table.lookup("gpt-4o-mini").unwrap().name, "gpt-4o-mini");
        assert_eq!(table.lookup("o3-mini").unwrap().name, "o3-mini");
        assert_eq!(table.lookup("o3-pro").unwrap().name, "o3-pro");
    }

    #[test]
    fn prices_match_published_rates() {
        let table = PriceTable::builtin();
        let p = |id: &str| table.lookup(id).unwrap().price.clone();
        let gpt4o = p("gpt-4o");
        assert_eq!(
            (gpt4o.input, gpt4o.cached_input, gpt4o.output),
            (5 * USD / 2, 5 * USD / 4, 10 * USD)
        );
        assert_eq!(gpt4o.reasoning, gpt4o.output);
        let sonnet = p("claude-sonnet-4");
        assert_eq!(sonnet.cache_write, 3_750_000_000);
        assert_eq!(sonnet.cache_write_1h, 6 * USD);
        assert_eq!(sonnet.long_context.as_ref().unwrap().output, 22_500_000_000);
        let pro = p("gemini-2.5-pro");
        let tier = pro.long_context.as_ref().unwrap();
        assert_eq!(
            (tier.input, tier.cached_input, tier.output),
            (5 * USD / 2, USD / 4, 15 * USD)
        );
        // A tier without cache rates scales them with input: 1.5 Pro cached 0.3125 -> 0.625.
        let old = p("gemini-1.5-pro");
        assert_eq!(old.long_context.as_ref().unwrap().cached_input, 625_000_000);
        assert_eq!(p("text-embedding-3-small").input, 20_000_000);
        assert_eq!(p("o1-pro").cached_input, 150 * USD, "no discount published");
    }

    #[test]
    fn overrides_win_and_use_the_same_normalisation() {
        let cheap = Price::from_usd_per_mtok(0.1, 0.4).unwrap();
        let table = PriceTable::builtin().with_overrides([
            ("my-local-model".to_string(), cheap.clone()),
            ("GPT-4o".to_string(), cheap.clone()),
            ("mock-echo".to_string(), cheap.clone()),
        ]);
        for id in [
            "my-local-model",
            "openai/my-local-model",
            "gpt-4o-2024-08-06",
            "mock-echo",
        ] {
            let got = table.lookup(id).unwrap();
            assert_eq!(got.source, PriceSource::Override, "{id}");
            assert_eq!(got.price, &cheap);
        }
        assert_eq!(
            table.lookup("gpt-4o-mini").unwrap().source,
            PriceSource::Builtin
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        let dup = "[meta]\ndate='x'\ncurrency='USD'\n[[model]]\nname='a'\nprovider='p'\ninput=1\noutput=1\n[[model]]\nname='A'\nprovider='p'\ninput=1\noutput=1\n";
        assert!(PriceTable::from_toml(dup).is_err());
        let negative = "[meta]\ndate='x'\ncurrency='USD'\n[[model]]\nname='a'\nprovider='p'\ninput=-1\noutput=1\n";
        assert!(PriceTable::from_toml(negative).is_err());
        let unknown = "[meta]\ndate='x'\ncurrency='USD'\n[[model]]\nname='a'\nprovider='p'\ninput=1\noutput=1\nwat=1\n";
        assert!(PriceTable::from_toml(unknown).is_err());
    }
}
