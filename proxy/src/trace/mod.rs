//! Per-request OpenTelemetry traces: a handle each request carries, spans per stage, and
//! W3C Trace Context in and out.
//!
//! A request is traced only when `telemetry.otlp_endpoint` is set and the request is
//! sampled (its `traceparent` says so, or, without one, `telemetry.sample_ratio` picks it).
//! Otherwise its [`Trace`] is empty and every call on it returns at once, without reading
//! a clock or building an attribute: attributes are written in closures that only run
//! when the trace records. Finished traces go to a bounded queue drained by the exporter
//! (`export`), off the request path.
//!
//! Spans carry names, sizes, counts, decisions and codes, never prompt text, keys,
//! arguments or matched values: the attribute setters take what a stage already reports
//! to metrics and the audit record.
//!
//! Any request path joins the same way:
//!
//! ```ignore
//! let t = ctx.trace.begin();                 // a stage starts
//! /* ... the stage ... */
//! ctx.trace.end(t, "auth", |a| a.str("tollgate.scope", &scope));
//! ctx.trace.root(|a| a.int("gen_ai.usage.input_tokens", 12));
//! ```

mod export;
mod w3c;

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

pub use export::{Exporter, TraceExport};
pub use w3c::{TraceParent, traceparent};

/// Spans a request records at most (tool decisions add one each): a trace is bounded too.
const MAX_SPANS: usize = 64;
/// Attribute strings are cut to this many bytes.
const MAX_VALUE: usize = 256;

/// The kind of a span, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

/// A span's attributes, written by the stage that ends it.
#[derive(Debug, Default)]
pub struct Attrs(Vec<(&'static str, Value)>);

impl Attrs {
    pub fn str(&mut self, key: &'static str, v: &str) -> &mut Self {
        self.0.push((key, Value::Str(cut(v))));
        self
    }
    pub fn int(&mut self, key: &'static str, v: i64) -> &mut Self {
        self.0.push((key, Value::Int(v)));
        self
    }
    pub fn float(&mut self, key: &'static str, v: f64) -> &mut Self {
        self.0.push((key, Value::Float(v)));
        self
    }
    pub fn bool(&mut self, key: &'static str, v: bool) -> &mut Self {
        self.0.push((key, Value::Bool(v)));
        self
    }
    pub fn list<S: AsRef<str>>(
        &mut self,
        key: &'static str,
        v: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        let items: Vec<String> = v.into_iter().take(32).map(|s| cut(s.as_ref())).collect();
        self.0.push((key, Value::List(items)));
        self
    }
    /// Replaces an attribute already set (the root's, set by several stages).
    fn merge(&mut self, other: Attrs) {
        for (k, v) in other.0 {
            match self.0.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => self.0.push((k, v)),
            }
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &(&'static str, Value)> {
        self.0.iter()
    }
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_VALUE {
        return s.to_string();
    }
    let mut end = MAX_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A finished span, ready for export.
#[derive(Debug)]
pub struct Span {
    pub span_id: [u8; 8],
    /// `None` for the root: its parent is the trace's remote parent, if any.
    pub parent: Option<[u8; 8]>,
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Attrs,
    pub error: bool,
}

/// One request's finished trace: its spans, root first.
#[derive(Debug)]
pub struct Finished {
    pub trace_id: [u8; 16],
    pub remote_parent: Option<[u8; 8]>,
    pub tracestate: Option<String>,
    pub spans: Vec<Span>,
}

/// A stage that began: where its span starts, and the id its children (an upstream
/// request's `traceparent`) name. Empty when the trace does not record.
#[derive(Debug, Clone, Copy)]
#[must_use = "a begun stage is ended with Trace::end"]
pub struct Begun(Option<(u64, [u8; 8])>);

impl Begun {
    pub const NONE: Begun = Begun(None);
}

struct Active {
    trace_id: [u8; 16],
    root_id: [u8; 8],
    remote_parent: Option<[u8; 8]>,
    tracestate: Option<String>,
    root_name: Cow<'static, str>,
    root_start: u64,
    root_attrs: Attrs,
    error: bool,
    spans: Vec<Span>,
    dropped: u32,
}

/// A request's trace handle; empty (and free) when the request is not traced.
#[derive(Default)]
pub struct Trace {
    active: Option<Box<Active>>,
    /// The incoming trace context's id, kept for the audit record even when not sampled.
    parent_trace: Option<[u8; 16]>,
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn random_id<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        // An all-zero id is invalid in W3C Trace Context.
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

impl Trace {
    /// Starts a request's trace: `parent` is its incoming `traceparent`/`tracestate`,
    /// `enabled` whether telemetry is configured, `ratio` the share of new traces kept.
    /// A sampled parent is always followed, an unsampled one never (parent-based).
    pub fn start(
        enabled: bool,
        ratio: f64,
        parent: Option<TraceParent>,
        name: impl Into<Cow<'static, str>>,
    ) -> Trace {
        let parent_trace = parent.as_ref().map(|p| p.trace_id);
        if !enabled {
            return Trace {
                active: None,
                parent_trace,
            };
        }
        let (trace_id, sampled) = match &parent {
            Some(p) => (p.trace_id, p.sampled),
            None => {
                let id = random_id::<16>();
                (id, w3c::ratio_sampled(&id, ratio))
            }
        };
        if !sampled {
            return Trace {
                active: None,
                parent_trace,
            };
        }
        Trace {
            active: Some(Box::new(Active {
                trace_id,
                root_id: random_id(),
                remote_parent: parent.as_ref().map(|p| p.span_id),
                tracestate: parent.and_then(|p| p.tracestate),
                root_name: name.into(),
                root_start: now_ns(),
                root_attrs: Attrs::default(),
                error: false,
                spans: Vec::new(),
                dropped: 0,
            })),
            parent_trace,
        }
    }

    /// Whether spans are being recorded.
    pub fn recording(&self) -> bool {
        self.active.is_some()
    }

    /// The trace id as 32 hex digits: this trace's, or the incoming one's when this request
    /// is not sampled. For the audit record.
    pub fn trace_id(&self) -> Option<String> {
        self.active
            .as_ref()
            .map(|a| a.trace_id)
            .or(self.parent_trace)
            .map(hex::encode)
    }

    /// Renames the root span once the route is known (`chat gpt-4o`).
    pub fn name_root(&mut self, name: impl FnOnce() -> String) {
        if let Some(a) = &mut self.active {
            a.root_name = Cow::Owned(name());
        }
    }

    /// Sets attributes on the root (request) span.
    pub fn root(&mut self, f: impl FnOnce(&mut Attrs)) {
        if let Some(a) = &mut self.active {
            let mut attrs = Attrs::default();
            f(&mut attrs);
            a.root_attrs.merge(attrs);
        }
    }

    /// Marks the request as failed (the root span's status).
    pub fn fail(&mut self) {
        if let Some(a) = &mut self.active {
            a.error = true;
        }
    }

    /// A stage begins now.
    pub fn begin(&self) -> Begun {
        match &self.active {
            Some(_) => Begun(Some((now_ns(), random_id()))),
            None => Begun::NONE,
        }
    }

    /// The `traceparent` a request sent on behalf of stage `b` carries: this trace, with
    /// the stage's span as the parent.
    pub fn child_traceparent(&self, b: Begun) -> Option<String> {
        let a = self.active.as_ref()?;
        let (_, id) = b.0?;
        Some(w3c::format(&a.trace_id, &id, true))
    }

    /// The incoming `tracestate`, passed on with the child `traceparent`.
    pub fn tracestate(&self) -> Option<&str> {
        self.active.as_ref()?.tracestate.as_deref()
    }

    /// Ends stage `b` as an internal span named `name` under the root.
    pub fn end(&mut self, b: Begun, name: &'static str, f: impl FnOnce(&mut Attrs)) {
        self.end_as(b, name, Kind::Internal, false, f);
    }

    /// Ends stage `b` with a kind and a status.
    pub fn end_as(
        &mut self,
        b: Begun,
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        error: bool,
        f: impl FnOnce(&mut Attrs),
    ) {
        let (Some(a), Begun(Some((start, id)))) = (&mut self.active, b) else {
            return;
        };
        if a.spans.len() >= MAX_SPANS {
            a.dropped += 1;
            return;
        }
        let mut attrs = Attrs::default();
        f(&mut attrs);
        a.spans.push(Span {
            span_id: id,
            parent: Some(a.root_id),
            name: name.into(),
            kind,
            start_ns: start,
            end_ns: now_ns().max(start),
            attrs,
            error,
        });
    }

    /// Closes the root span and hands the trace over for export; later calls do nothing.
    pub fn finish(&mut self) -> Option<Finished> {
        let a = *self.active.take()?;
        let mut spans = Vec::with_capacity(a.spans.len() + 1);
        let mut root_attrs = a.root_attrs;
        if a.dropped > 0 {
            root_attrs.int("tollgate.trace.dropped_spans", i64::from(a.dropped));
        }
        spans.push(Span {
            span_id: a.root_id,
            parent: None,
            name: a.root_name,
            kind: Kind::Server,
            start_ns: a.root_start,
            end_ns: now_ns().max(a.root_start),
            attrs: root_attrs,
            error: a.error,
        });
        spans.extend(a.spans);
        Some(Finished {
            trace_id: a.trace_id,
            remote_parent: a.remote_parent,
            tracestate: a.tracestate,
            spans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untraced_request_records_nothing_and_runs_no_closure() {
        let mut t = Trace::start(false, 1.0, None, "x");
        let b = t.begin();
        t.end(b, "auth", |_| {
            panic!("attributes built for an untraced request")
        });
        t.root(|_| panic!("attributes built for an untraced request"));
        assert!(t.finish().is_none());
        assert!(t.trace_id().is_none());
    }

    #[test]
    fn spans_hang_under_the_root_which_hangs_under_the_remote_parent() {
        let parent = w3c::parse(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            Some("congo=t61rcWkgMzE"),
        )
        .expect("valid");
        let mut t = Trace::start(true, 0.0, Some(parent), "chat");
        let b = t.begin();
        let child = t.child_traceparent(b).expect("recording");
        t.end(b, "upstream", |a| {
            a.str("gen_ai.request.model", "gpt-4o");
        });
        let f = t.finish().expect("sampled parent is followed");
        assert_eq!(hex::encode(f.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(
            f.remote_parent.map(hex::encode).as_deref(),
            Some("b7ad6b7169203331")
        );
        assert_eq!(f.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(f.spans.len(), 2);
        assert_eq!(f.spans[1].parent, Some(f.spans[0].span_id));
        assert_eq!(
            child,
            format!(
                "00-0af7651916cd43dd8448eb211c80319c-{}-01",
                hex::encode(f.spans[1].span_id)
            )
        );
    }

    #[test]
    fn an_unsampled_parent_is_not_traced_but_its_id_is_kept() {
        let parent = w3c::parse(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            None,
        )
        .unwrap();
        let mut t = Trace::start(true, 1.0, Some(parent), "chat");
        assert!(!t.recording());
        assert_eq!(
            t.trace_id().as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert!(t.finish().is_none());
    }

    #[test]
    fn a_trace_keeps_at_most_max_spans() {
        let mut t = Trace::start(true, 1.0, None, "x");
        for _ in 0..MAX_SPANS + 5 {
            let b = t.begin();
            t.end(b, "tool", |_| {});
        }
        let f = t.finish().unwrap();
        assert_eq!(f.spans.len(), MAX_SPANS + 1);
        assert!(
            f.spans[0]
                .attrs
                .iter()
                .any(|(k, v)| *k == "tollgate.trace.dropped_spans" && *v == Value::Int(5))
        );
    }

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(300);
        let mut a = Attrs::default();
        a.str("k", &long);
        let Value::Str(s) = &a.0[0].1 else { panic!() };
        assert!(s.len() <= MAX_VALUE);
    }
}
