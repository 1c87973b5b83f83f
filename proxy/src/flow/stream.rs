//! Stage 8 for streams: the synchronous processor each upstream read passes through.
//!
//! It parses SSE events, feeds usage accounting, removes the usage-only chunk tollgate asked
//! for on the client's behalf, and holds back the terminal event (`[DONE]`,
//! `response.completed`, `message_stop`) until the cost is committed. Everything else is
//! re-emitted byte for byte as soon as it arrives.

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tollgate_guardrails::{FindingCount, Guard};
use tollgate_pricing::{self as pricing, Api, StreamAccounting, Usage};

use super::redact::StreamGuard;
use crate::sse;

/// How an upstream stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The provider closed the stream after its terminal event.
    Complete,
    /// The provider's stream broke or went silent before its end.
    Cut,
    /// The agent disconnected.
    ClientGone,
    /// An output guardrail with `block` matched: the stream is ended by tollgate.
    Blocked,
}

pub struct StreamProcessor {
    api: Api,
    parser: sse::Parser,
    accounting: StreamAccounting,
    /// tollgate set `stream_options.include_usage` itself: the client must not see the
    /// usage-only chunk it produces.
    strip_usage: bool,
    /// The terminal event(s), written once the cost is committed.
    held: BytesMut,
    terminal_seen: bool,
    guard: Option<StreamGuard>,
}

impl StreamProcessor {
    pub fn new(api: Api, model: &str, strip_usage: bool, output: &Guard) -> StreamProcessor {
        StreamProcessor {
            api,
            parser: sse::Parser::new(),
            accounting: StreamAccounting::new(api, model),
            strip_usage,
            held: BytesMut::new(),
            terminal_seen: false,
            guard: StreamGuard::new(api, output),
        }
    }

    /// Whether an output guardrail blocked the stream.
    pub fn blocked(&self) -> bool {
        self.guard.as_ref().is_some_and(StreamGuard::blocked)
    }

    /// The output guardrail findings so far.
    pub fn findings(&self) -> Vec<FindingCount> {
        self.guard
            .as_ref()
            .map(StreamGuard::summary)
            .unwrap_or_default()
    }

    fn is_terminal(&self, event: &sse::Event) -> bool {
        match self.api {
            Api::ChatCompletions | Api::Completions => event.data.as_deref() == Some("[DONE]"),
            Api::Responses => matches!(
                event.name.as_deref(),
                Some("response.completed" | "response.incomplete" | "response.failed")
            ),
            Api::AnthropicMessages => event.name.as_deref() == Some("message_stop"),
            Api::Embeddings => false,
        }
    }

    /// Takes one upstream read; returns what to send the agent now.
    pub fn push(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        for event in self.parser.push(bytes) {
            let json = event
                .data
                .as_deref()
                .filter(|d| d.starts_with('{'))
                .and_then(|d| serde_json::from_str::<Value>(d).ok());
            if let Some(json) = &json {
                self.accounting.observe(json);
                if self.strip_usage && pricing::is_usage_only_chunk(json) {
                    continue;
                }
            }
            let terminal = self.is_terminal(&event) || self.terminal_seen;
            self.terminal_seen = terminal;
            // Terminal events wait for the commit; they are redacted like any other, since
            // some repeat the whole answer (`response.completed`).
            let sink = if terminal { &mut self.held } else { &mut out };
            match (&mut self.guard, json) {
                (Some(guard), Some(json)) => {
                    for ev in guard.event(event.name.as_deref(), json) {
                        // Named events (Responses, Anthropic) repeat their name as `type`.
                        let name = event
                            .name
                            .as_ref()
                            .map(|n| ev.get("type").and_then(Value::as_str).unwrap_or(n));
                        sink.extend_from_slice(&sse::Event::write(name, &ev.to_string()));
                    }
                    if guard.blocked() {
                        break;
                    }
                }
                _ => sink.extend_from_slice(&event.raw),
            }
        }
        out.freeze()
    }

    /// How the stream ended when the provider closed it.
    pub fn end_of_upstream(&self) -> End {
        if self.terminal_seen && self.parser.pending().iter().all(u8::is_ascii_whitespace) {
            End::Complete
        } else {
            End::Cut
        }
    }

    /// What the request cost so far: the provider's usage, or the input estimate plus the
    /// output counted in what streamed.
    pub fn usage(&self, input_estimate: u64) -> Usage {
        self.accounting.usage(input_estimate).0
    }

    /// What the output guard still holds (as final deltas), then the held-back terminal
    /// events. After a block only the guard's findings remain: nothing more is sent.
    pub fn finish(&mut self) -> Bytes {
        if self.blocked() {
            return Bytes::new();
        }
        let mut out = BytesMut::new();
        if let Some(guard) = &mut self.guard {
            for ev in guard.finish() {
                let name = match self.api {
                    Api::AnthropicMessages | Api::Responses => {
                        ev.get("type").and_then(Value::as_str)
                    }
                    _ => None,
                };
                out.extend_from_slice(&sse::Event::write(name, &ev.to_string()));
            }
        }
        out.extend_from_slice(&std::mem::take(&mut self.held));
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str) -> String {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}]}}\n\n"
        )
    }

    const USAGE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";

    #[test]
    fn the_injected_usage_chunk_is_charged_but_never_shown() {
        let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", true, &Guard::off());
        let stream = format!("{}{}{USAGE}data: [DONE]\n\n", chunk("a"), chunk("b"));
        let shown = p.push(stream.as_bytes());
        assert_eq!(
            String::from_utf8_lossy(&shown),
            format!("{}{}", chunk("a"), chunk("b"))
        );
        assert_eq!(p.end_of_upstream(), End::Complete);
        assert_eq!(p.usage(100).input, 9);
        assert_eq!(&p.finish()[..], b"data: [DONE]\n\n");
    }

    #[test]
    fn a_usage_chunk_the_client_asked_for_passes() {
        let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", false, &Guard::off());
        let shown = p.push(format!("{}{USAGE}", chunk("a")).as_bytes());
        assert!(String::from_utf8_lossy(&shown).contains("prompt_tokens"));
    }

    #[test]
    fn a_stream_without_its_terminal_event_is_cut_and_charged_for_what_streamed() {
        let mut p = StreamProcessor::new(Api::ChatCompletions, "gpt-4o", true, &Guard::off());
        p.push(format!("{}{}", chunk("hello"), chunk(" world")).as_bytes());
        p.push(b"data: {\"id\":\"c\",\"obj");
        assert_eq!(p.end_of_upstream(), End::Cut);
        let u = p.usage(50);
        assert_eq!(u.input, 50);
        assert!(u.output >= 2, "{u:?}");
    }
}
