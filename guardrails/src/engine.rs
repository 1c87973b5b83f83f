//! The built-in scan loop: merges keyword and trigger-byte events in text order and
//! runs the matching validator at each, left to right, without overlaps.

use aho_corasick::Input;

use crate::Category;
use crate::pii;
use crate::secrets::Secrets;
use crate::text::{Hay, Triggers, run_start};

/// A validated match of a built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub kind: &'static str,
    pub cat: Category,
    /// The trigger that found it, which may lie before `start` (`password = <value>`):
    /// a rescan must start at or before it to find the hit again.
    pub anchor: usize,
}

impl Hit {
    pub fn new(start: usize, end: usize, kind: &'static str, cat: Category) -> Hit {
        Hit {
            start,
            end,
            kind,
            cat,
            anchor: start,
        }
    }
}

/// What a validator may know besides the text: how far back a match may extend (the
/// end of the previous finding).
pub(crate) struct Ctx {
    pub floor: usize,
}

/// The compiled built-in detectors of one guard.
pub(crate) struct Engine {
    pub pii: bool,
    pub secrets: Option<&'static Secrets>,
}

#[derive(Clone, Copy)]
enum Event {
    Keyword {
        start: usize,
        end: usize,
        pattern: usize,
    },
    Trigger(usize),
}

impl Engine {
    pub fn is_empty(&self) -> bool {
        !self.pii && self.secrets.is_none()
    }

    fn find_keyword(&self, b: &[u8], at: usize) -> Option<Event> {
        let s = self.secrets?;
        if at >= b.len() {
            return None;
        }
        let m = s.ac.find(Input::new(b).range(at..))?;
        Some(Event::Keyword {
            start: m.start(),
            end: m.end(),
            pattern: m.pattern().as_usize(),
        })
    }

    fn at_trigger(&self, hay: &Hay, ctx: &Ctx, t: usize) -> (Option<Hit>, usize) {
        let b = hay.b;
        let c = b[t];
        if c == b'@' {
            let h = if self.pii {
                pii::detect(hay, ctx, t).0
            } else {
                None
            };
            return (h, t + 1);
        }
        if !c.is_ascii_digit() {
            return match self.secrets {
                Some(s) => s.at_trigger(hay, ctx, t),
                None => (None, t + 1),
            };
        }
        if let Some(s) = self.secrets
            && let (Some(h), skip) = s.at_trigger(hay, ctx, t)
        {
            return (Some(h), skip);
        }
        if self.pii {
            return pii::detect(hay, ctx, t);
        }
        (
            None,
            t + hay.run(t, usize::MAX, |c| c.is_ascii_alphanumeric()).max(1),
        )
    }

    /// Scans `b[from..]`, appending hits in order. `b[..from]` is context that was
    /// scanned before and holds no finding reaching past `from`.
    ///
    /// When `complete` is false the end of `b` is not the end of the text: the scan stops
    /// at the first candidate whose decision looked at the end and returns the earliest
    /// position that candidate may claim. Everything before that is final.
    pub fn scan(
        &self,
        b: &[u8],
        from: usize,
        complete: bool,
        hits: &mut Vec<Hit>,
    ) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let hay = Hay::new(b);
        let mut cursor = from;
        let mut kw = self.find_keyword(b, from);
        let mut triggers = Triggers::new(self.pii, self.secrets.is_some());
        let mut trig = triggers.next(b, from);
        loop {
            let event = match (kw, trig) {
                (None, None) => return None,
                (Some(k @ Event::Keyword { start, .. }), Some(t)) if start <= t => k,
                (Some(k), None) => k,
                (_, Some(t)) => Event::Trigger(t),
            };
            let ctx = Ctx { floor: cursor };
            hay.take_touched();
            let (pos, found, skip_to) = match event {
                Event::Keyword {
                    start,
                    end,
                    pattern,
                } => {
                    let s = self.secrets.expect("keyword events need secret rules");
                    (start, s.keyword(&hay, &ctx, pattern, start, end), start + 1)
                }
                Event::Trigger(t) => {
                    let (found, skip) = self.at_trigger(&hay, &ctx, t);
                    (t, found, skip)
                }
            };
            if !complete && hay.take_touched() {
                return Some(run_start(b, pos, cursor));
            }
            if let Some(mut h) = found {
                h.anchor = h.start.min(pos);
                debug_assert!(h.start >= cursor && h.end > h.start, "{h:?} at {cursor}");
                hits.push(h);
                cursor = h.end;
            }
            // After a hit the search resumes at its end, wherever the trigger's own skip
            // would have gone: the same place a scan starting there would begin.
            let next = if found.is_some() {
                cursor
            } else {
                cursor.max(skip_to)
            };
            match event {
                Event::Keyword { .. } => {
                    kw = self.find_keyword(b, next);
                    if trig.is_some_and(|t| t < cursor) {
                        trig = triggers.next(b, cursor);
                    }
                }
                Event::Trigger(_) => {
                    trig = triggers.next(b, next);
                    if let Some(Event::Keyword { start, .. }) = kw
                        && start < cursor
                    {
                        kw = self.find_keyword(b, cursor);
                    }
                }
            }
        }
    }
}
