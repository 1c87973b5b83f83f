//! The trace exporter: a bounded queue requests hand finished traces to, and a background
//! task that batches them as OTLP/HTTP protobuf (`POST {otlp_endpoint}/v1/traces`).
//!
//! A request never waits on the collector: handing over is a `try_send` that drops the
//! trace and counts its spans (`tollgate_trace_spans_total{result="queue_full"}`) when the
//! queue is full. A batch the collector refuses or cannot take is dropped and counted
//! (`export_failed`), and the exporter backs off while the queue absorbs what comes next.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prost::Message;
use tokio::sync::mpsc;

use super::{Finished, Value};
use crate::outbound::Outbound;
use crate::state::State;

/// Finished traces waiting for export, at most.
const QUEUE: usize = 4096;
/// Spans sent in one POST, at most.
const BATCH_SPANS: usize = 1024;
/// How long a batch waits to fill once its first trace arrived.
const LINGER: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The request side of the exporter: where finished traces go.
pub struct Exporter {
    tx: mpsc::Sender<Finished>,
    rx: Mutex<Option<mpsc::Receiver<Finished>>>,
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter::with_capacity(QUEUE)
    }
}

impl Exporter {
    /// An exporter whose queue holds `traces` finished traces.
    pub fn with_capacity(traces: usize) -> Exporter {
        let (tx, rx) = mpsc::channel(traces.max(1));
        Exporter {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    /// The queue's other end, once: the export task (or a benchmark) drains it.
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Finished>> {
        self.rx.lock().expect("exporter").take()
    }

    /// Hands a finished trace over; never waits. Returns whether it was queued.
    pub fn submit(&self, t: Finished, counter: &prometheus::IntCounterVec) -> bool {
        let n = t.spans.len() as u64;
        match self.tx.try_send(t) {
            Ok(()) => true,
            Err(_) => {
                counter.with_label_values(&["queue_full"]).inc_by(n);
                false
            }
        }
    }
}

/// The background task draining the queue to the collector.
pub struct TraceExport {
    pub state: Arc<State>,
}

#[async_trait::async_trait]
impl BackgroundService for TraceExport {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.state.traces.take_receiver() else {
            return;
        };
        let out = Outbound::default();
        let mut backoff = BACKOFF_MIN;
        loop {
            let first = tokio::select! {
                t = rx.recv() => match t { Some(t) => t, None => return },
                _ = shutdown.changed() => return,
            };
            let mut batch = vec![first];
            let mut spans = batch[0].spans.len();
            let deadline = tokio::time::Instant::now() + LINGER;
            while spans < BATCH_SPANS {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(t)) => {
                        spans += t.spans.len();
                        batch.push(t);
                    }
                    _ => break,
                }
            }
            if self.export(&out, batch, spans).await {
                backoff = BACKOFF_MIN;
            } else {
                // The collector is down or refusing: the queue absorbs (and drops, counted)
                // while the exporter waits.
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

impl TraceExport {
    async fn export(&self, out: &Outbound, batch: Vec<Finished>, spans: usize) -> bool {
        let rt = self.state.runtime();
        let t = &rt.config.telemetry;
        let counter = &self.state.metrics.trace_spans;
        let Some(url) = &t.otlp_endpoint else {
            // Telemetry was turned off by a reload: what was queued goes nowhere.
            counter
                .with_label_values(&["export_failed"])
                .inc_by(spans as u64);
            return true;
        };
        let body = encode(&t.service_name, batch);
        let headers = [("content-type", "application/x-protobuf".to_string())];
        match out
            .post(url, "/v1/traces", &headers, Bytes::from(body), TIMEOUT)
            .await
        {
            Ok(status) if (200..300).contains(&status) => {
                counter
                    .with_label_values(&["exported"])
                    .inc_by(spans as u64);
                true
            }
            result => {
                counter
                    .with_label_values(&["export_failed"])
                    .inc_by(spans as u64);
                let why = match result {
                    Ok(status) => format!("status {status}"),
                    Err(e) => e,
                };
                tracing::warn!(spans, error = %why, "trace export failed, spans dropped");
                false
            }
        }
    }
}

fn any(v: Value) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        Value::Str(s) => V::StringValue(s),
        Value::Int(i) => V::IntValue(i),
        Value::Float(f) => V::DoubleValue(f),
        Value::Bool(b) => V::BoolValue(b),
        Value::List(items) => V::ArrayValue(ArrayValue {
            values: items
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(V::StringValue(s)),
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(any(v)),
        ..Default::default()
    }
}

/// Span flags: the sampled bit, and whether the parent is known to be remote (bits 8, 9).
const SAMPLED: u32 = 0x01;
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// The OTLP `ExportTraceServiceRequest` for a batch of traces.
pub fn encode(service_name: &str, batch: Vec<Finished>) -> Vec<u8> {
    let mut spans = Vec::new();
    for t in batch {
        let state = t.tracestate.unwrap_or_default();
        for s in t.spans {
            let (parent, remote) = match (s.parent, t.remote_parent) {
                (Some(p), _) => (p.to_vec(), false),
                (None, Some(p)) => (p.to_vec(), true),
                (None, None) => (Vec::new(), false),
            };
            spans.push(Span {
                trace_id: t.trace_id.to_vec(),
                span_id: s.span_id.to_vec(),
                trace_state: state.clone(),
                parent_span_id: parent,
                flags: SAMPLED | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 },
                name: s.name.into_owned(),
                kind: s.kind as i32,
                start_time_unix_nano: s.start_ns,
                end_time_unix_nano: s.end_ns,
                attributes: s.attrs.0.into_iter().map(|(k, v)| kv(k, v)).collect(),
                status: Some(Status {
                    message: String::new(),
                    code: if s.error {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Unset as i32
                    },
                }),
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::Str(service_name.to_string())),
                    kv(
                        "service.version",
                        Value::Str(env!("CARGO_PKG_VERSION").to_string()),
                    ),
                    kv("telemetry.sdk.name", Value::Str("tollgate".into())),
                    kv("telemetry.sdk.language", Value::Str("rust".into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tollgate".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: "https://opentelemetry.io/schemas/1.37.0".into(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Trace;

    #[test]
    fn a_trace_round_trips_through_the_otlp_encoding() {
        let mut t = Trace::start(true, 1.0, None, "chat gpt-4o");
        t.root(|a| {
            a.str("gen_ai.operation.name", "chat")
                .int("gen_ai.usage.input_tokens", 12)
                .list("tollgate.reasons", ["BUDGET"]);
        });
        let b = t.begin();
        t.end(b, "auth", |_| {});
        let f = t.finish().unwrap();
        let bytes = encode("svc", vec![f]);
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].name, "chat gpt-4o");
        assert!(spans[0].parent_span_id.is_empty());
        assert_eq!(spans[1].parent_span_id, spans[0].span_id);
        assert_eq!(spans[0].kind, 2);
        let attr = |k: &str| {
            spans[0]
                .attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
        };
        assert_eq!(
            attr("gen_ai.usage.input_tokens").and_then(|v| v.value),
            Some(any_value::Value::IntValue(12))
        );
    }
}
