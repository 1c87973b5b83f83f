//! An incremental Server-Sent Events parser and writer.
//!
//! Upstream bytes arrive in arbitrary pieces; the parser yields whole events and keeps the
//! exact bytes of each so an event tollgate does not change is re-emitted byte for byte.
//! An event may be no larger than the parser's limit: a provider that sends more (or never
//! ends an event) would otherwise grow the buffer without bound.

use bytes::{Bytes, BytesMut};

/// One SSE event as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The exact bytes of the event, including its terminating blank line.
    pub raw: Bytes,
    /// The `event:` field, if any.
    pub name: Option<String>,
    /// The `data:` lines joined with `\n`; `None` for comment-only events.
    pub data: Option<String>,
}

impl Event {
    /// Appends an event with the given name and data (multi-line data is split) to `out`.
    /// Written straight into the caller's buffer, lines found with `memchr`: a stream whose
    /// guard holds back text writes every event this way.
    pub fn write_to(name: Option<&str>, data: &str, out: &mut BytesMut) {
        out.reserve(data.len() + 16 + name.map_or(0, |n| n.len() + 8));
        if let Some(name) = name {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\n");
        }
        let mut rest = data.as_bytes();
        loop {
            out.extend_from_slice(b"data: ");
            let Some(end) = memchr::memchr(b'\n', rest) else {
                out.extend_from_slice(rest);
                break;
            };
            out.extend_from_slice(&rest[..=end]);
            rest = &rest[end + 1..];
        }
        out.extend_from_slice(b"\n\n");
    }
}

/// Splits a byte stream into events. Handles `\n`, `\r\n` and `\r` line endings.
#[derive(Debug)]
pub struct Parser {
    buf: BytesMut,
    /// Bytes of `buf` already scanned without finding an event end.
    scanned: usize,
    /// The largest event accepted, in bytes (its terminating blank line included).
    limit: usize,
    /// An event passed the limit: the stream is over, nothing more is parsed.
    oversized: bool,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::with_limit(usize::MAX)
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// A parser that accepts events of at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Parser {
        Parser {
            buf: BytesMut::new(),
            scanned: 0,
            limit,
            oversized: false,
        }
    }

    /// Appends bytes and returns every event completed by them. The events before one over
    /// the limit are returned; from that one on, nothing is (see [`Parser::oversized`]).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        if self.oversized {
            return Vec::new();
        }
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.find_event_end() {
            if end > self.limit {
                self.overflow();
                return events;
            }
            let raw = self.buf.split_to(end).freeze();
            self.scanned = 0;
            events.push(parse_event(raw));
        }
        if self.buf.len() > self.limit {
            self.overflow();
        }
        events
    }

    /// Whether an event passed the limit (the stream must end as a provider error).
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    fn overflow(&mut self) {
        self.oversized = true;
        self.buf = BytesMut::new();
        self.scanned = 0;
    }

    /// Bytes received that do not yet form a whole event (a cut stream leaves them here).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Finds the end (exclusive) of the first event: a line ending followed by an empty line.
    fn find_event_end(&mut self) -> Option<usize> {
        let b = &self.buf[..];
        // Restart a little before where the last scan stopped: a terminator may straddle.
        let mut i = self.scanned.saturating_sub(3);
        while let Some(at) = memchr::memchr2(b'\n', b'\r', &b[i..]) {
            let end = i + at;
            let first = match b.get(end + 1) {
                _ if b[end] == b'\n' => end + 1,
                // A lone `\r` at the very end may still become `\r\n`: wait for more bytes.
                None => {
                    self.scanned = end;
                    return None;
                }
                Some(b'\n') => end + 2,
                Some(_) => end + 1,
            };
            match b.get(first) {
                Some(b'\n') => return Some(first + 1),
                Some(b'\r') => match b.get(first + 1) {
                    Some(b'\n') => return Some(first + 2),
                    Some(_) => return Some(first + 1),
                    None => {
                        self.scanned = end;
                        return None;
                    }
                },
                Some(_) => i = first,
                None => {
                    self.scanned = end;
                    return None;
                }
            }
        }
        self.scanned = b.len();
        None
    }
}

fn parse_event(raw: Bytes) -> Event {
    match parse_one_data_line(&raw) {
        Some(data) => Event {
            raw,
            name: None,
            data: Some(data),
        },
        None => parse_any(raw),
    }
}

/// The data of the common event, one `data: ` line ended by a blank line, read without
/// splitting lines; `None` for any other shape (or bytes that are not UTF-8).
fn parse_one_data_line(raw: &[u8]) -> Option<String> {
    let line = raw.strip_prefix(b"data: ")?.strip_suffix(b"\n\n")?;
    if memchr::memchr2(b'\n', b'\r', line).is_some() {
        return None;
    }
    std::str::from_utf8(line).ok().map(str::to_owned)
}

fn parse_any(raw: Bytes) -> Event {
    let text = String::from_utf8_lossy(&raw);
    let mut name = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    Event { raw, name, data }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_openai_and_anthropic_framing() {
        let mut p = Parser::new();
        let evs = p.push(b"data: {\"a\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(evs[1].data.as_deref(), Some("[DONE]"));
        let evs = p.push(b"event: message_start\r\ndata: {}\r\n\r\n: ping\n\n");
        assert_eq!(evs[0].name.as_deref(), Some("message_start"));
        assert_eq!(evs[1].data, None);
    }

    #[test]
    fn a_cut_stream_leaves_its_partial_event_pending() {
        let mut p = Parser::new();
        assert!(p.push(b"data: {\"par").is_empty());
        assert_eq!(p.pending(), b"data: {\"par");
    }

    #[test]
    fn multi_line_data_is_joined_and_written_back() {
        let mut p = Parser::new();
        let ev = &p.push(b"data: a\ndata: b\n\n")[0];
        assert_eq!(ev.data.as_deref(), Some("a\nb"));
        let mut out = BytesMut::new();
        Event::write_to(None, "a\nb", &mut out);
        assert_eq!(&out[..], b"data: a\ndata: b\n\n");
    }

    #[test]
    fn an_event_over_the_limit_ends_parsing_whole_or_in_pieces() {
        let small = b"data: {\"a\":1}\n\n";
        let big = format!("data: {}\n\n", "x".repeat(100));
        // Whole in one read: the event before it passes, the big one and the rest do not.
        let mut p = Parser::with_limit(64);
        let mut stream = small.to_vec();
        stream.extend_from_slice(big.as_bytes());
        stream.extend_from_slice(small);
        let evs = p.push(&stream);
        assert_eq!(evs.len(), 1);
        assert!(p.oversized());
        assert!(p.push(small).is_empty());
        assert!(p.pending().is_empty(), "nothing stays buffered");
        // An event that never ends: caught once the pending bytes pass the limit.
        let mut p = Parser::with_limit(64);
        for _ in 0..6 {
            assert!(p.push(b"data: xxxxxxxxxxxx").is_empty());
        }
        assert!(p.oversized());
        // At the limit exactly is accepted.
        let mut p = Parser::with_limit(small.len());
        assert_eq!(p.push(small).len(), 1);
        assert!(!p.oversized());
    }

    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let ending = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        let event = (
            proptest::option::of("[a-z_]{1,8}"),
            proptest::collection::vec("[ -~]{0,12}", 1..3),
            ending,
        )
            .prop_map(|(name, lines, nl)| {
                let mut s = String::new();
                if let Some(n) = name {
                    s += &format!("event: {n}{nl}");
                }
                for l in lines {
                    s += &format!("data: {l}{nl}");
                }
                s += nl;
                s
            });
        proptest::collection::vec(event, 1..6).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        /// An event is written as its name line, one `data:` line per line of its data
        /// (an empty data or a trailing newline giving an empty line), and a blank line;
        /// appended after what the buffer held.
        #[test]
        fn written_events_are_their_lines(
            before in "[ -~]{0,4}",
            name in proptest::option::of("[a-z_.]{1,12}"),
            data in "[ -~\n\u{e9}]{0,40}",
        ) {
            let mut expected = before.clone();
            if let Some(n) = &name {
                expected += &format!("event: {n}\n");
            }
            for line in data.split('\n') {
                expected += &format!("data: {line}\n");
            }
            expected += "\n";
            let mut out = BytesMut::from(before.as_bytes());
            Event::write_to(name.as_deref(), &data, &mut out);
            prop_assert_eq!(std::str::from_utf8(&out).unwrap(), expected.as_str());
            let mut p = Parser::new();
            let evs = p.push(&out[before.len()..]);
            prop_assert_eq!(evs.len(), 1);
            prop_assert_eq!(evs[0].name.as_deref(), name.as_deref());
            prop_assert_eq!(evs[0].data.as_deref(), Some(data.as_str()));
        }

        /// The one-data-line reading agrees with the general one wherever it answers.
        #[test]
        fn the_common_event_reads_as_any_event_does(
            head in prop_oneof![Just("data: "), Just("data:"), Just("event: x\ndata: "), Just("")],
            body in "[ -~\r\n\u{e9}]{0,12}",
            tail in prop_oneof![Just("\n\n"), Just("\r\n\r\n"), Just("\n\r"), Just("\n")],
        ) {
            let raw = Bytes::from(format!("{head}{body}{tail}"));
            if let Some(data) = parse_one_data_line(&raw) {
                prop_assert_eq!(Some(data), parse_any(raw).data);
            }
        }

        /// Whatever the split, the events and their raw bytes are those of the whole stream,
        /// and re-emitting every raw event (plus what is pending) reproduces it exactly.
        #[test]
        fn splitting_never_changes_the_events(bytes in stream(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5)) {
            let whole = Parser::new().push(&bytes);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.sort();
            let mut p = Parser::new();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in points.into_iter().chain([bytes.len()]) {
                pieces.extend(p.push(&bytes[last..c]));
                last = c;
            }
            prop_assert_eq!(&pieces, &whole);
            let mut rejoined: Vec<u8> = whole.iter().flat_map(|e| e.raw.to_vec()).collect();
            rejoined.extend_from_slice(p.pending());
            prop_assert_eq!(rejoined, bytes);
        }
    }
}
