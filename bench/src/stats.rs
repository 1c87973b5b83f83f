//! The results a scenario produces, as the JSON lines `load` prints and `report` reads.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Streamed or whole responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    NonStream,
    Stream,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::NonStream => "non-stream",
            Mode::Stream => "stream",
        }
    }
}

/// Latency percentiles of one scenario, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// A histogram of microseconds from 1 µs to one minute at three significant digits, the
/// resolution every scenario records with.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static bounds are valid")
}

/// What one load scenario measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    /// Which server was called (`direct`, `passthrough`, `tollgate-embedded`, ...).
    pub target: String,
    pub mode: Mode,
    /// Concurrent keep-alive connections, each with one request in flight.
    pub connections: usize,
    /// Requests completed in the measured window (warm-up excluded), errors included.
    pub requests: u64,
    /// Non-2xx answers, broken connections and streams that did not end with `[DONE]`.
    pub errors: u64,
    /// Length of the measured window.
    pub seconds: f64,
    /// Successful requests per second over the window.
    pub rps: f64,
    /// Whole response time: for streams, the time to the last byte.
    pub latency: Percentiles,
    /// Streams only: time to the first byte of the body (the first SSE event).
    pub ttfb: Option<Percentiles>,
    /// CPU time (user + system, all threads) the called server spent per measured request:
    /// the mock's for `direct`, the proxy's alone otherwise.
    #[serde(default)]
    pub server_cpu_us_per_request: Option<f64>,
    /// CPU time the load generator itself spent over the window, in cores (1.0 = one core
    /// busy throughout): well below its thread count, it was not the bottleneck.
    #[serde(default)]
    pub client_cpu_share: Option<f64>,
}

/// Memory of one server process, read from `/proc/PID/status` after its 64-connection runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryResult {
    pub target: String,
    /// `VmRSS`: resident now.
    pub vm_rss_kib: u64,
    /// `VmHWM`: the peak resident size since the process started.
    pub vm_hwm_kib: u64,
}

/// One line of the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Load(LoadResult),
    Memory(MemoryResult),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut h = histogram();
        for v in 1..=1000 {
            h.record(v).expect("in range");
        }
        let p = Percentiles::of(&h);
        assert_eq!(
            (p.p50_us, p.p90_us, p.p99_us, p.max_us),
            (500, 900, 990, 1000)
        );
    }

    #[test]
    fn records_round_trip_as_tagged_json_lines() {
        let records = [
            Record::Load(LoadResult {
                target: "direct".into(),
                mode: Mode::Stream,
                connections: 64,
                requests: 10,
                errors: 1,
                seconds: 2.0,
                rps: 4.5,
                latency: Percentiles::default(),
                ttfb: Some(Percentiles::default()),
                server_cpu_us_per_request: Some(120.5),
                client_cpu_share: Some(0.25),
            }),
            Record::Memory(MemoryResult {
                target: "tollgate-embedded".into(),
                vm_rss_kib: 1,
                vm_hwm_kib: 2,
            }),
        ];
        for r in records {
            let line = serde_json::to_string(&r).expect("json");
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Record>(&line).expect("parse"), r);
        }
        let memory = r#"{"kind":"memory","target":"t","vm_rss_kib":3,"vm_hwm_kib":4}"#;
        assert!(matches!(
            serde_json::from_str::<Record>(memory),
            Ok(Record::Memory(_))
        ));
    }
}
