//! The compiled guard: scanning, deciding per finding, redacting, and the summary the
//! proxy turns into metrics and audit records.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::custom::{Cand, Rule};
use crate::engine::{Engine, Hit};
use crate::fold::Folded;
use crate::stream::StreamRedactor;
use crate::text::run_start;
use crate::{Action, Category, Finding, GuardConfig, GuardError, Kind, secrets};

/// Where in a request or response a finding was: free text, or tool-call arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Text,
    ToolArgs,
}

impl Place {
    pub fn as_str(self) -> &'static str {
        match self {
            Place::Text => "text",
            Place::ToolArgs => "tool_args",
        }
    }
}

/// How many findings of one type got one action: what metrics and audit records carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingCount {
    pub kind: Kind,
    pub category: Category,
    pub action: Action,
    pub place: Place,
    pub count: u32,
}

/// The verdict on one text (or one JSON body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A finding's action is `block`: the caller refuses the request or ends the stream.
    pub blocked: bool,
    /// The redacted text; `Some` only if something was redacted.
    pub redacted: Option<String>,
    pub summary: Vec<FindingCount>,
}

impl Outcome {
    /// The distinct types that caused the block, for the error message.
    pub fn blocked_kinds(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .summary
            .iter()
            .filter(|c| c.action == Action::Block)
            .map(|c| c.kind.as_str())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub fn is_clean(&self) -> bool {
        self.summary.is_empty()
    }
}

/// Accumulates counts by (kind, action, place) in a stable order.
#[derive(Default, Debug, Clone)]
pub(crate) struct Tally(BTreeMap<(Kind, Action, Place), (Category, u32)>);

impl Tally {
    pub fn add(&mut self, kind: &Kind, cat: Category, action: Action, place: Place) {
        let e = self
            .0
            .entry((kind.clone(), action, place))
            .or_insert((cat, 0));
        e.1 = e.1.saturating_add(1);
    }

    pub fn merge(&mut self, other: &[FindingCount]) {
        for c in other {
            let e = self
                .0
                .entry((c.kind.clone(), c.action, c.place))
                .or_insert((c.category, 0));
            e.1 = e.1.saturating_add(c.count);
        }
    }

    pub fn to_vec(&self) -> Vec<FindingCount> {
        self.0
            .iter()
            .map(|((kind, action, place), (category, count))| FindingCount {
                kind: kind.clone(),
                category: *category,
                action: *action,
                place: *place,
                count: *count,
            })
            .collect()
    }
}

/// A guard compiled from a [`GuardConfig`]. Cheap to clone (shared inner state), `Send`
/// and `Sync`.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    pii: Action,
    secrets: Action,
    custom: Vec<Rule>,
    custom_hold: usize,
}

/// The final findings of a window and how far they are final.
pub(crate) struct Window {
    pub findings: Vec<Finding>,
    /// Text before this position is decided; text after it may still change.
    pub cut: usize,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("pii", &self.inner.pii)
            .field("secrets", &self.inner.secrets)
            .field("custom", &self.inner.custom.len())
            .finish()
    }
}

impl Guard {
    pub fn new(cfg: &GuardConfig) -> Result<Guard, GuardError> {
        let custom = cfg
            .custom
            .iter()
            .filter(|r| r.action != Action::Off)
            .map(Rule::compile);
        let custom: Vec<Rule> = custom.collect::<Result<_, _>>()?;
        // Rules that are off are still compiled, so a bad one is reported at load.
        for r in cfg.custom.iter().filter(|r| r.action == Action::Off) {
            Rule::compile(r)?;
        }
        let custom_hold = custom.iter().map(|r| r.hold).max().unwrap_or(0);
        Ok(Guard {
            inner: Arc::new(Inner {
                engine: Engine {
                    pii: cfg.pii != Action::Off,
                    secrets: (cfg.secrets != Action::Off).then(secrets::shared),
                },
                pii: cfg.pii,
                secrets: cfg.secrets,
                custom,
                custom_hold,
            }),
        })
    }

    /// A guard that finds nothing.
    pub fn off() -> Guard {
        Guard::new(&GuardConfig::all(Action::Off)).expect("an empty config compiles")
    }

    /// True if no detector runs: scanning is free.
    pub fn is_off(&self) -> bool {
        self.inner.engine.is_empty() && self.inner.custom.is_empty()
    }

    /// All findings in `text`, sorted and non-overlapping.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        self.window(text, 0, true).findings
    }

    /// The action this guard takes on `f`.
    pub fn action_of(&self, f: &Finding) -> Action {
        match f.category {
            Category::Pii => self.inner.pii,
            Category::Secret => self.inner.secrets,
            Category::Custom => self
                .inner
                .custom
                .iter()
                .find(|r| r.kind == f.kind)
                .map_or(Action::Log, |r| r.action),
        }
    }

    /// Scans `text` and applies each finding's action.
    pub fn apply(&self, text: &str) -> Outcome {
        self.apply_at(text, Place::Text)
    }

    pub(crate) fn apply_at(&self, text: &str, place: Place) -> Outcome {
        if self.is_off() {
            return Outcome::default();
        }
        let findings = self.scan(text);
        let mut tally = Tally::default();
        let mut out = String::new();
        let mut redacted = false;
        let mut blocked = false;
        let mut last = 0;
        for f in &findings {
            let action = self.action_of(f);
            tally.add(&f.kind, f.category, action, place);
            match action {
                Action::Redact => {
                    out.push_str(&text[last..f.start]);
                    push_marker(&mut out, &f.kind);
                    last = f.end;
                    redacted = true;
                }
                Action::Block => blocked = true,
                Action::Log | Action::Off => {}
            }
        }
        let redacted = redacted.then(|| {
            out.push_str(&text[last..]);
            out
        });
        Outcome {
            blocked,
            redacted,
            summary: tally.to_vec(),
        }
    }

    /// A redactor for text that arrives in pieces.
    pub fn stream(&self) -> StreamRedactor {
        StreamRedactor::new(self.clone())
    }

    /// Finds the findings in `text[from..]`. With `complete` false, `text` may continue:
    /// only findings before the returned cut are final, and none straddles it.
    ///
    /// The detectors run on the folded text (see [`crate::fold`]); findings and the cut
    /// come back as offsets in `text`, a finding covering every original character that
    /// produced it.
    pub(crate) fn window(&self, text: &str, from: usize, complete: bool) -> Window {
        let folded = Folded::new(text);
        if folded.is_identity() {
            return self.window_folded(text, from, complete);
        }
        let w = self.window_folded(&folded.text, folded.to_folded(from), complete);
        let mut cut = folded.to_orig(w.cut);
        let mut findings: Vec<Finding> = Vec::with_capacity(w.findings.len());
        let mut last_end = from;
        for f in w.findings {
            // Two findings from one ligature would share its character: the later one
            // starts where the earlier ended.
            let start = folded.to_orig(f.start).max(last_end);
            let end = folded.to_orig_end(f.end).max(start);
            last_end = end;
            findings.push(Finding { start, end, ..f });
        }
        // A cut inside one character's expansion rounds down to the character; a
        // finding ending in that character waits for the next window.
        while let Some(f) = findings.last()
            && f.end > cut
        {
            cut = cut.min(f.start);
            findings.pop();
        }
        Window { findings, cut }
    }

    fn window_folded(&self, text: &str, from: usize, complete: bool) -> Window {
        let b = text.as_bytes();
        let len = b.len();
        let mut hits: Vec<Hit> = Vec::new();
        let open = self.inner.engine.scan(b, from, complete, &mut hits);
        let mut cut = if complete {
            len
        } else {
            let mut c = open.unwrap_or(len).min(run_start(b, len, from));
            if !self.inner.custom.is_empty() {
                let reach = floor_char(text, len.saturating_sub(self.inner.custom_hold)).max(from);
                c = c.min(run_start(b, reach, from));
            }
            c
        };
        let mut cands: Vec<Cand> = Vec::new();
        let until = if complete {
            len
        } else {
            open.unwrap_or(len)
                .min(len.saturating_sub(self.inner.custom_hold))
        };
        for (i, r) in self.inner.custom.iter().enumerate() {
            r.find(i, text, from, until.max(from), &mut cands);
        }
        // Built-in hits come first at equal spans; then the longer, then the earlier.
        let mut all: Vec<(usize, usize, Option<usize>, Option<Hit>)> = hits
            .iter()
            .map(|h| (h.start, h.end, None, Some(*h)))
            .chain(cands.iter().map(|c| (c.start, c.end, Some(c.rule), None)))
            .collect();
        let anchor = |a: &(usize, usize, Option<usize>, Option<Hit>)| a.3.map_or(a.0, |h| h.anchor);
        all.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        if !complete {
            // Nothing may straddle the cut, kept or dropped, so a rescan from the cut
            // sees exactly what a whole-text scan sees there.
            loop {
                let before = cut;
                for a in &all {
                    let s = anchor(a);
                    if s < cut && cut < a.1 {
                        cut = run_start(b, s, from);
                    }
                }
                if cut == before {
                    break;
                }
            }
        }
        let mut findings = Vec::new();
        let mut last_end = from;
        for (s, e, rule, hit) in all {
            if s < last_end || s >= cut {
                continue;
            }
            let (kind, category) = match (rule, hit) {
                (_, Some(h)) => (Kind::builtin(h.kind), h.cat),
                (Some(r), None) => (self.inner.custom[r].kind.clone(), Category::Custom),
                (None, None) => continue,
            };
            findings.push(Finding {
                kind,
                category,
                start: s,
                end: e,
            });
            last_end = e;
        }
        Window { findings, cut }
    }
}

/// The largest char boundary at or below `i`.
pub(crate) fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub(crate) fn push_marker(out: &mut String, kind: &Kind) {
    out.push_str("[REDACTED:");
    for c in kind.as_str().chars() {
        out.push(c.to_ascii_uppercase());
    }
    out.push(']');
}
