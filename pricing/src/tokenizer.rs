//! Token counting per model family: OpenAI's real BPE ranks (o200k_base, cl100k_base) where
//! the model is OpenAI's, a documented conservative approximation everywhere else.

use crate::bpe;
use crate::table::normalize;

/// How tokens are counted for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// GPT-4o, GPT-4.1, GPT-4.5, GPT-5, o-series, gpt-oss.
    O200kBase,
    /// GPT-4, GPT-3.5, text-embedding-3-*, ada-002.
    Cl100kBase,
    /// Every other family (Claude, Gemini, Mistral, Llama, Qwen, DeepSeek, unknown):
    /// cl100k_base count × [`APPROXIMATION_FACTOR`], rounded up. Their tokenizers are not
    /// public (Claude, Gemini) or not bundled; see docs/pricing.md for why this bound.
    Approximate,
}

/// Safety factor applied to a cl100k_base count for families without a bundled tokenizer.
/// Claude's tokenizers are reported at 1.1-1.35x cl100k for English and more for code; 1.5
/// keeps the estimate above them for the text we measured and is documented as unproven.
pub const APPROXIMATION_FACTOR_NUM: u64 = 3;
pub const APPROXIMATION_FACTOR_DEN: u64 = 2;

/// The tokenizer for a model id (provider prefixes and case ignored).
pub fn tokenizer_for(model: &str) -> Tokenizer {
    let name = normalize(model);
    let bare = name.rsplit('/').next().unwrap_or(&name);
    let bare = bare.strip_prefix("ft:").unwrap_or(bare);
    const O200K: &[&str] = &[
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "chatgpt-4o",
        "o1",
        "o3",
        "o4",
        "gpt-oss",
        "codex-",
        "computer-use",
        "gpt-realtime",
        "gpt-audio",
    ];
    const CL100K: &[&str] = &[
        "gpt-4",
        "gpt-3.5",
        "gpt-35",
        "text-embedding-",
        "davinci-002",
        "babbage-002",
    ];
    if O200K.iter().any(|p| bare.starts_with(p)) {
        Tokenizer::O200kBase
    } else if CL100K.iter().any(|p| bare.starts_with(p)) {
        Tokenizer::Cl100kBase
    } else {
        Tokenizer::Approximate
    }
}

/// Tokens in `text` for `model`'s family. Special-token text such as `<|endoftext|>` is
/// counted as ordinary text, as the APIs do.
pub fn count_tokens(model: &str, text: &str) -> u64 {
    count_with(tokenizer_for(model), text)
}

pub(crate) fn count_with(tokenizer: Tokenizer, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match tokenizer {
        Tokenizer::O200kBase => bpe::o200k().count(text),
        Tokenizer::Cl100kBase => bpe::cl100k().count(text),
        Tokenizer::Approximate => {
            let base = bpe::cl100k().count(text);
            (base * APPROXIMATION_FACTOR_NUM).div_ceil(APPROXIMATION_FACTOR_DEN)
        }
    }
}

/// Loads both BPEs now (~0.18 s together on this machine), so the first request does not
/// pay for it, and compiles the calling thread's pre-tokenizers. Call once at startup. Every
/// other thread compiles its own on its first count (~2.5 ms for both; see docs/pricing.md).
pub fn warm_up() {
    for encoding in [bpe::o200k(), bpe::cl100k()] {
        encoding.warm_up_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_pick_their_tokenizer() {
        let cases = [
            ("gpt-4o", Tokenizer::O200kBase),
            ("openai/gpt-4o-mini-2024-07-18", Tokenizer::O200kBase),
            ("gpt-4.1-nano", Tokenizer::O200kBase),
            ("gpt-5-mini", Tokenizer::O200kBase),
            ("o1", Tokenizer::O200kBase),
            ("o3-mini", Tokenizer::O200kBase),
            ("o4-mini-2025-04-16", Tokenizer::O200kBase),
            ("ft:gpt-4o-mini-2024-07-18:org::abc", Tokenizer::O200kBase),
            ("gpt-4", Tokenizer::Cl100kBase),
            ("gpt-4-turbo", Tokenizer::Cl100kBase),
            ("gpt-3.5-turbo", Tokenizer::Cl100kBase),
            ("gpt-35-turbo", Tokenizer::Cl100kBase),
            ("text-embedding-3-small", Tokenizer::Cl100kBase),
            ("text-embedding-ada-002", Tokenizer::Cl100kBase),
            ("claude-sonnet-4-20250514", Tokenizer::Approximate),
            ("gemini-2.5-pro", Tokenizer::Approximate),
            ("mock-echo", Tokenizer::Approximate),
        ];
        for (model, want) in cases {
            assert_eq!(tokenizer_for(model), want, "{model}");
        }
    }

    #[test]
    fn known_counts() {
        // Counts from tiktoken for these strings.
        assert_eq!(count_tokens("gpt-4o", "You are a helpful assistant."), 6);
        assert_eq!(count_tokens("gpt-4o", "Hello!"), 2);
        assert_eq!(count_tokens("gpt-4", "tiktoken is great!"), 6);
        assert_eq!(count_tokens("gpt-4o", ""), 0);
        // Special tokens are plain text to the API.
        assert!(count_tokens("gpt-4o", "<|endoftext|>") > 1);
    }

    #[test]
    fn approximation_is_above_cl100k() {
        let text = "fn main() { println!(\"hello\"); } // ünïcödé 日本語のテキスト";
        let base = count_tokens("gpt-4", text);
        let approx = count_tokens("claude-3-5-sonnet", text);
        assert_eq!(approx, (base * 3).div_ceil(2));
    }
}
