//! The common chat chunk, read without building a JSON tree.
//!
//! Most events of a chat stream carry one choice whose delta is a piece of text and nothing
//! else. Parsing each into a `serde_json::Value`, redacting it and writing the tree back
//! cost about 60,000 instructions an event (callgrind, `docs/benchmarks.md`); reading only
//! the fields that matter, borrowing the text from the event, and splicing a changed text
//! into the event's own bytes costs a fraction of that. A chunk with anything more (usage,
//! a finish, tool calls, another text, log probabilities, audio, a second choice, a
//! duplicate key) is not read here and takes the general path.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// A chat chunk whose one choice carries a content delta and nothing else tollgate reads.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow)]
    choices: [Choice<'a>; 1],
    #[serde(default)]
    usage: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    delta: Delta<'a>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
    #[serde(default)]
    logprobs: Option<IgnoredAny>,
}

/// The delta; every field the general path would scan, count, strip or gate besides
/// `content` is named so that its presence sends the chunk there.
#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    content: &'a RawValue,
    #[serde(default)]
    text: Option<IgnoredAny>,
    #[serde(default)]
    refusal: Option<IgnoredAny>,
    #[serde(default)]
    reasoning_content: Option<IgnoredAny>,
    #[serde(default)]
    reasoning: Option<IgnoredAny>,
    #[serde(default)]
    audio: Option<IgnoredAny>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
    #[serde(default)]
    function_call: Option<IgnoredAny>,
}

impl Delta<'_> {
    fn only_content(&self) -> bool {
        [
            &self.text,
            &self.refusal,
            &self.reasoning_content,
            &self.reasoning,
            &self.audio,
            &self.tool_calls,
            &self.function_call,
        ]
        .iter()
        .all(|f| f.is_none())
    }
}

/// The content delta of a chat chunk that carries nothing else tollgate reads.
#[derive(Debug)]
pub struct TextChunk<'a> {
    /// The choice's index.
    pub choice: u64,
    /// The text, unescaped.
    pub text: Cow<'a, str>,
    /// Where the text's JSON string, quotes included, lies in the event's data.
    span: Range<usize>,
}

impl<'a> TextChunk<'a> {
    /// Reads `data` (an event's data) as a text chunk; `None` when it is anything else.
    pub fn read(data: &'a str) -> Option<TextChunk<'a>> {
        if !data.starts_with('{') {
            return None;
        }
        let chunk: Chunk<'a> = serde_json::from_str(data).ok()?;
        let [choice] = chunk.choices;
        if chunk.usage.is_some()
            || choice.finish_reason.is_some()
            || choice.logprobs.is_some()
            || !choice.delta.only_content()
        {
            return None;
        }
        let raw = choice.delta.content.get();
        if !raw.starts_with('"') {
            return None;
        }
        let text = if raw.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(raw).ok()?)
        } else {
            Cow::Borrowed(&raw[1..raw.len() - 1])
        };
        // The raw string borrows from `data`: its place there, checked.
        let start = (raw.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
        let span = start..start + raw.len();
        (data.get(span.clone()) == Some(raw)).then_some(TextChunk {
            choice: choice.index,
            text,
            span,
        })
    }

    /// `data` with this chunk's text replaced by `text`.
    pub fn splice(&self, data: &str, text: &str) -> String {
        let quoted = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned());
        let mut out = String::with_capacity(data.len() - self.span.len() + quoted.len());
        out.push_str(&data[..self.span.start]);
        out.push_str(&quoted);
        out.push_str(&data[self.span.end..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_text_chunk_is_read_and_spliced() {
        let data = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":2,"delta":{"role":"assistant","content":"a \"b\"\n"},"finish_reason":null,"logprobs":null}],"usage":null}"#;
        let chunk = TextChunk::read(data).expect("a text chunk");
        assert_eq!((chunk.choice, chunk.text.as_ref()), (2, "a \"b\"\n"));
        let spliced: Value = serde_json::from_str(&chunk.splice(data, "x\u{1F600}\"")).unwrap();
        let mut want: Value = serde_json::from_str(data).unwrap();
        want["choices"][0]["delta"]["content"] = json!("x\u{1F600}\"");
        assert_eq!(spliced, want);
    }

    #[test]
    fn anything_more_than_text_is_left_to_the_general_path() {
        let text = |delta: &str, rest: &str| {
            format!(r#"{{"choices":[{{"index":0,"delta":{delta}{rest}}}]}}"#)
        };
        let cases = [
            text(r#"{"content":"a","tool_calls":[]}"#, ""),
            text(r#"{"content":"a","refusal":"no"}"#, ""),
            text(r#"{"content":"a","reasoning_content":"r"}"#, ""),
            text(r#"{"content":"a","reasoning":"r"}"#, ""),
            text(r#"{"content":"a","audio":{"data":"x"}}"#, ""),
            text(r#"{"content":"a","function_call":{}}"#, ""),
            text(r#"{"content":"a","text":"t"}"#, ""),
            text(r#"{"content":"a","content":"b"}"#, ""),
            text(r#"{"content":null}"#, ""),
            text(r#"{"content":7}"#, ""),
            text(r#"{"role":"assistant"}"#, ""),
            text(r#"{"content":"a"}"#, r#","finish_reason":"stop""#),
            text(r#"{"content":"a"}"#, r#","logprobs":{"content":[]}"#),
            text(r#"{"content":"a"}"#, r#","index":-1"#),
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#.to_owned(),
            r#"{"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":1}}"#.to_owned(),
            r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#.to_owned(),
            r#"{"choices":[{"delta":{"content":"a"}}],"choices":[]}"#.to_owned(),
            r#"[DONE]"#.to_owned(),
            r#"{"choices":[{"delta":{"content":"a"}}]"#.to_owned(),
        ];
        for data in cases {
            assert!(TextChunk::read(&data).is_none(), "{data}");
        }
        assert!(TextChunk::read(&text(r#"{"content":"a","x":[1]}"#, r#","y":{}"#)).is_some());
    }
}
