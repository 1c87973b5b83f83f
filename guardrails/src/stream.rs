//! Redaction of text that arrives in pieces (streamed model output), never emitting a
//! byte of a finding.
//!
//! Each push rescans the text not yet emitted, with some already-emitted text before it
//! as context. The scan reports how far its decisions are final: a candidate whose
//! validator looked at the end of the buffer (a token that may continue, an open PEM
//! block, a phone number whose next group may follow), the trailing token-like run (a
//! keyword or an e-mail may be half there), and the reach of custom patterns are held
//! back; everything before is redacted and emitted. The concatenated output therefore
//! equals the redaction of the whole text, however it was split.

use crate::fold::Folded;
use crate::guard::{Place, Tally, floor_char, push_marker};
use crate::text::MAX_BACK;
use crate::{Action, FindingCount, Guard};

/// Streaming counterpart of [`Guard::apply`]; see the module docs.
#[derive(Debug)]
pub struct StreamRedactor {
    guard: Guard,
    /// Already-emitted context, then the pending text.
    buf: String,
    /// Where the pending text starts in `buf`.
    start: usize,
    tally: Tally,
    blocked: bool,
    place: Place,
}

impl StreamRedactor {
    pub(crate) fn new(guard: Guard) -> StreamRedactor {
        StreamRedactor {
            guard,
            buf: String::new(),
            start: 0,
            tally: Tally::default(),
            blocked: false,
            place: Place::Text,
        }
    }

    /// Counts findings of this stream as found in tool-call arguments.
    pub fn for_tool_args(mut self) -> StreamRedactor {
        self.place = Place::ToolArgs;
        self
    }

    /// Adds a chunk and returns the text that is safe to emit now (possibly empty).
    /// After a blocking finding nothing more is emitted.
    pub fn push(&mut self, chunk: &str) -> String {
        if self.blocked {
            return String::new();
        }
        if self.guard.is_off() {
            return chunk.to_string();
        }
        self.buf.push_str(chunk);
        self.emit(false)
    }

    /// Ends the stream and returns the rest of the text.
    pub fn finish(&mut self) -> String {
        if self.blocked {
            return String::new();
        }
        let out = self.emit(true);
        self.buf.clear();
        self.start = 0;
        out
    }

    /// True once a finding whose action is `block` was seen; no byte of it was emitted.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Findings so far, by type and action.
    pub fn summary(&self) -> Vec<FindingCount> {
        self.tally.to_vec()
    }

    /// Bytes received but not yet emitted.
    pub fn held(&self) -> usize {
        self.buf.len() - self.start
    }

    fn emit(&mut self, complete: bool) -> String {
        let w = self.guard.window(&self.buf, self.start, complete);
        let mut out = String::new();
        let mut last = self.start;
        for f in &w.findings {
            let action = self.guard.action_of(f);
            self.tally.add(&f.kind, f.category, action, self.place);
            match action {
                Action::Redact => {
                    out.push_str(&self.buf[last..f.start]);
                    push_marker(&mut out, &f.kind);
                    last = f.end;
                }
                Action::Block => {
                    out.push_str(&self.buf[last..f.start]);
                    self.blocked = true;
                    self.buf.clear();
                    self.start = 0;
                    return out;
                }
                Action::Log | Action::Off => {}
            }
        }
        out.push_str(&self.buf[last..w.cut]);
        self.keep_context(w.cut);
        out
    }

    /// Drops emitted text but the last [`MAX_BACK`] bytes detectors may look back at.
    ///
    /// Context is never emitted again, only looked at, so it is kept folded: invisible
    /// characters cannot push a keyword out of the look-back a whole-text scan has.
    fn keep_context(&mut self, cut: usize) {
        let folded = Folded::new(&self.buf[..cut]);
        if folded.is_identity() {
            let keep = floor_char(&self.buf, cut.saturating_sub(MAX_BACK));
            self.buf.drain(..keep);
            self.start = cut - keep;
            return;
        }
        let context =
            &folded.text[floor_char(&folded.text, folded.text.len().saturating_sub(MAX_BACK))..];
        let mut buf = String::with_capacity(context.len() + self.buf.len() - cut);
        buf.push_str(context);
        buf.push_str(&self.buf[cut..]);
        self.start = context.len();
        self.buf = buf;
    }
}
