//! What the mock answers: the script read from the last user message and the answer generated
//! from it under the request's output-token limit.

use super::rng::Rng;
use super::tokens;

/// Visible tokens of an unscripted answer.
pub(crate) const DEFAULT_TOKENS: u32 = 24;
/// The longest answer `WORDS:` writes, so a typo cannot make the mock write gigabytes.
pub(crate) const MAX_WORDS: u32 = 1_000_000;
/// Hidden tokens a reasoning model bills before it answers.
pub(crate) const REASONING_TOKENS: u32 = 16;

const LOREM: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "minim",
    "veniam",
    "quis",
    "nostrud",
];

/// The answer a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Script {
    /// `SAY: <text>`: exactly this text.
    Say(String),
    /// `CALL: <name> <json args>` lines: these tool calls, in parallel.
    Calls(Vec<CallSpec>),
    /// `WORDS: <n>`: n tokens of text.
    Words(u32),
    /// Anything else: the default lorem-ish answer.
    Lorem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CallSpec {
    pub(crate) name: String,
    pub(crate) arguments: String,
}

/// Splits off a first line `THINK: <text>`: reasoning the model shows before the answer
/// the rest of the message scripts.
pub(crate) fn thinking(text: &str) -> (Option<String>, &str) {
    let Some(rest) = text.trim_start().strip_prefix("THINK:") else {
        return (None, text);
    };
    let (line, script) = rest.split_once('\n').unwrap_or((rest, ""));
    (Some(line.trim().to_owned()), script)
}

/// Reads the script from the text of the last user message.
pub(crate) fn parse(text: &str) -> Script {
    let text = text.trim_start();
    if let Some(rest) = text.strip_prefix("SAY:") {
        return Script::Say(rest.strip_prefix(' ').unwrap_or(rest).to_owned());
    }
    let calls: Vec<CallSpec> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("CALL:"))
        .filter_map(parse_call)
        .collect();
    if !calls.is_empty() {
        return Script::Calls(calls);
    }
    if let Some(n) = text
        .strip_prefix("WORDS:")
        .and_then(|rest| rest.trim().parse().ok())
    {
        return Script::Words(n);
    }
    Script::Lorem
}

fn parse_call(rest: &str) -> Option<CallSpec> {
    let rest = rest.trim();
    let (name, arguments) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(name, args)| (name, args.trim()));
    (!name.is_empty()).then(|| CallSpec {
        name: name.to_owned(),
        arguments: if arguments.is_empty() {
            "{}".to_owned()
        } else {
            arguments.to_owned()
        },
    })
}

impl Script {
    /// The same answer for an API without tools (legacy completions): calls become text.
    pub(crate) fn text_only(self) -> Script {
        match self {
            Script::Calls(calls) => Script::Say(
                calls
                    .iter()
                    .map(|call| format!("{}({})", call.name, call.arguments))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            other => other,
        }
    }
}

/// A generated tool call (ids are the API formatter's business).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) name: String,
    pub(crate) arguments: String,
}

/// The generated answer and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Generation {
    pub(crate) text: String,
    pub(crate) calls: Vec<Call>,
    /// The output limit cut the answer short.
    pub(crate) truncated: bool,
    /// Tokens of the visible answer.
    pub(crate) visible_tokens: u32,
    /// Hidden tokens billed by a reasoning model.
    pub(crate) reasoning_tokens: u32,
}

impl Generation {
    /// What the provider bills as output: visible and hidden tokens.
    pub(crate) fn completion_tokens(&self) -> u32 {
        self.visible_tokens + self.reasoning_tokens
    }
}

/// Generates the answer to `script` within `limit` output tokens (reasoning included, as
/// OpenAI counts them); `rng` only varies the lorem words.
pub(crate) fn generate(
    script: &Script,
    limit: Option<u32>,
    reasoning: bool,
    rng: &mut Rng,
) -> Generation {
    let limit = limit.unwrap_or(u32::MAX);
    let reasoning_tokens = if reasoning {
        REASONING_TOKENS.min(limit)
    } else {
        0
    };
    let budget = limit - reasoning_tokens;
    let mut generation = Generation {
        text: String::new(),
        calls: Vec::new(),
        truncated: false,
        visible_tokens: 0,
        reasoning_tokens,
    };
    match script {
        Script::Say(text) => generation.set_text(text, budget),
        Script::Words(n) => generation.set_lorem((*n).min(MAX_WORDS), budget, rng),
        Script::Lorem => generation.set_lorem(DEFAULT_TOKENS, budget, rng),
        Script::Calls(specs) => generation.set_calls(specs, budget),
    }
    generation
}

impl Generation {
    fn set_text(&mut self, text: &str, budget: u32) {
        let (kept, tokens) = tokens::truncate(text, budget);
        self.truncated = kept.len() < text.len();
        self.text = kept;
        self.visible_tokens = tokens;
    }

    /// Only as much lorem as the budget allows is written: a huge `WORDS:` stays cheap.
    fn set_lorem(&mut self, wanted: u32, budget: u32, rng: &mut Rng) {
        self.text = lorem(wanted.min(budget), rng);
        self.visible_tokens = tokens::count(&self.text);
        self.truncated = wanted > budget;
    }

    fn set_calls(&mut self, specs: &[CallSpec], budget: u32) {
        let mut left = budget;
        for spec in specs {
            let name_tokens = tokens::count(&spec.name);
            let cost = name_tokens + tokens::count(&spec.arguments);
            if cost <= left {
                left -= cost;
                self.calls.push(Call {
                    name: spec.name.clone(),
                    arguments: spec.arguments.clone(),
                });
                continue;
            }
            self.truncated = true;
            if left > name_tokens {
                let (arguments, tokens) = tokens::truncate(&spec.arguments, left - name_tokens);
                left -= name_tokens + tokens;
                self.calls.push(Call {
                    name: spec.name.clone(),
                    arguments,
                });
            }
            break;
        }
        self.visible_tokens = budget - left;
    }
}

/// About `n` tokens of lorem-ish text (exactly `n` unless re-tokenisation merges a boundary).
fn lorem(n: u32, rng: &mut Rng) -> String {
    let mut text = String::new();
    let mut capital = true;
    let mut have = 0;
    // Words are one or two tokens: add half the shortfall at a time, then recount, so a long
    // answer costs a few encodings instead of one per word.
    while have < n.saturating_add(1) {
        for _ in 0..=(n - have.min(n)) / 2 {
            if !text.is_empty() {
                text.push(' ');
            }
            let word = LOREM[rng.below(LOREM.len())];
            if capital {
                let mut chars = word.chars();
                text.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                text.push_str(chars.as_str());
            } else {
                text.push_str(word);
            }
            capital = rng.percent(12);
            if capital {
                text.push('.');
            } else if rng.percent(8) {
                text.push(',');
            }
        }
        have = tokens::count(&text);
    }
    tokens::truncate(&text, n).0
}

/// Splits `text` into token-ish pieces of 1 to 7 characters, cutting anywhere, inside words
/// included, so clients must reassemble.
pub(crate) fn pieces(text: &str, rng: &mut Rng) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let take = rng.between(1, 7);
        pieces.push(chars.by_ref().take(take).collect());
    }
    pieces
}

/// The text of the last user message of a chat-style message list (OpenAI, Anthropic,
/// Responses input items): its string content or its text parts joined.
pub(crate) fn last_user_text(messages: &serde_json::Value) -> String {
    messages
        .as_array()
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .find(|message| message.get("role").and_then(|r| r.as_str()) == Some("user"))
        })
        .and_then(|message| message.get("content"))
        .map(content_text)
        .unwrap_or_default()
}

/// A content value as text: a string, or the `text` of its parts joined by newlines.
pub(crate) fn content_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(|text| text.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::rng::fnv1a;
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};
    use serde_json::json;

    fn rng() -> Rng {
        Rng::new(fnv1a(b"script"))
    }

    #[test]
    fn scripts_are_read_from_the_message() {
        let call = |name: &str, arguments: &str| CallSpec {
            name: name.into(),
            arguments: arguments.into(),
        };
        let cases = [
            ("SAY: hello there", Script::Say("hello there".into())),
            ("  SAY:x", Script::Say("x".into())),
            ("SAY: two\nlines ", Script::Say("two\nlines ".into())),
            (
                "CALL: get_weather {\"city\": \"Paris\"}",
                Script::Calls(vec![call("get_weather", "{\"city\": \"Paris\"}")]),
            ),
            (
                "CALL: a {\"x\":1}\nCALL: b\n",
                Script::Calls(vec![call("a", "{\"x\":1}"), call("b", "{}")]),
            ),
            ("WORDS: 7", Script::Words(7)),
            ("WORDS: many", Script::Lorem),
            ("hello", Script::Lorem),
            ("please SAY: nothing", Script::Lorem),
        ];
        for (text, script) in cases {
            assert_eq!(parse(text), script, "{text:?}");
        }
    }

    #[test]
    fn a_think_line_comes_before_the_script() {
        assert_eq!(
            thinking("THINK: plan it\nSAY: done"),
            (Some("plan it".to_owned()), "SAY: done")
        );
        assert_eq!(thinking("SAY: x"), (None, "SAY: x"));
    }

    #[test]
    fn the_last_user_message_is_the_script() {
        let messages = json!([
            {"role": "user", "content": "SAY: old"},
            {"role": "assistant", "content": "old"},
            {"role": "user", "content": [{"type": "text", "text": "SAY: new"}]},
            {"role": "tool", "content": "result"}
        ]);
        assert_eq!(last_user_text(&messages), "SAY: new");
        assert_eq!(last_user_text(&json!([])), "");
    }

    #[test]
    fn default_and_words_lengths() {
        let lorem = generate(&Script::Lorem, None, false, &mut rng());
        assert_eq!(lorem.visible_tokens, DEFAULT_TOKENS);
        assert_eq!(tokens::count(&lorem.text), DEFAULT_TOKENS);
        assert!(!lorem.truncated);
        let words = generate(&Script::Words(100), None, false, &mut rng());
        assert_eq!(words.visible_tokens, 100);
        let cut = generate(&Script::Words(100), Some(10), false, &mut rng());
        assert_eq!((cut.visible_tokens, cut.truncated), (10, true));
        let huge = generate(&Script::Words(u32::MAX), Some(12), false, &mut rng());
        assert_eq!((huge.visible_tokens, huge.truncated), (12, true));
        let long = generate(&Script::Words(5000), None, false, &mut rng());
        assert_eq!(tokens::count(&long.text), 5000);
    }

    #[test]
    fn reasoning_tokens_count_against_the_limit() {
        let free = generate(&Script::Lorem, None, true, &mut rng());
        assert_eq!(free.reasoning_tokens, REASONING_TOKENS);
        assert_eq!(free.completion_tokens(), REASONING_TOKENS + DEFAULT_TOKENS);
        let starved = generate(&Script::Lorem, Some(10), true, &mut rng());
        assert_eq!((starved.reasoning_tokens, starved.visible_tokens), (10, 0));
        assert!(starved.truncated);
        assert!(starved.text.is_empty());
    }

    #[test]
    fn calls_fit_or_are_cut() {
        let specs = vec![
            CallSpec {
                name: "lookup".into(),
                arguments: "{\"q\": \"a long query about things\"}".into(),
            },
            CallSpec {
                name: "other".into(),
                arguments: "{}".into(),
            },
        ];
        let whole = generate(&Script::Calls(specs.clone()), None, false, &mut rng());
        assert_eq!(whole.calls.len(), 2);
        assert!(!whole.truncated);
        let cut = generate(&Script::Calls(specs), Some(4), false, &mut rng());
        assert!(cut.truncated);
        assert_eq!(cut.calls.len(), 1);
        assert!(cut.visible_tokens <= 4);
        assert!("{\"q\": \"a long query about things\"}".starts_with(&cut.calls[0].arguments));
    }

    #[test]
    fn text_only_turns_calls_into_text() {
        let calls = Script::Calls(vec![CallSpec {
            name: "f".into(),
            arguments: "{}".into(),
        }]);
        assert_eq!(calls.text_only(), Script::Say("f({})".into()));
    }

    proptest! {
        #[test]
        fn say_is_a_prefix_within_the_limit(text in "\\PC{0,80}", limit in 1u32..40) {
            let generation = generate(&Script::Say(text.clone()), Some(limit), false, &mut rng());
            prop_assert!(generation.visible_tokens <= limit);
            prop_assert!(text.starts_with(&generation.text));
            prop_assert_eq!(generation.truncated, generation.text.len() < text.len());
            prop_assert_eq!(tokens::count(&generation.text), generation.visible_tokens);
        }

        #[test]
        fn pieces_reassemble(text in "\\PC{0,80}", seed in any::<u64>()) {
            let pieces = pieces(&text, &mut Rng::new(seed));
            prop_assert!(pieces.iter().all(|piece| !piece.is_empty()));
            prop_assert_eq!(pieces.concat(), text);
        }
    }
}
