//! The load generator against the real mock provider: it counts what it sends, tells
//! streams from whole answers, and counts failures instead of hiding them.

use std::time::Duration;

use tollgate_bench::body::BodySpec;
use tollgate_bench::load::{self, LoadConfig, LoadError, Stop};
use tollgate_bench::stats::Mode;

fn config(addr: std::net::SocketAddr, stream: bool, model: &str) -> LoadConfig {
    LoadConfig {
        target: "direct".into(),
        addr,
        path: "/v1/chat/completions".into(),
        key: Some("tg_bench".into()),
        connections: 3,
        warmup: Duration::ZERO,
        stop: Stop::Count(30),
        body: BodySpec {
            model: model.into(),
            stream,
            ..BodySpec::default()
        },
        server_pid: None,
    }
}

#[tokio::test]
async fn counted_runs_send_exactly_that_many_requests() {
    let mock = tollgate_tests::mock::provider().spawn().await;
    for stream in [false, true] {
        let r = load::run(config(mock.addr(), stream, "mock-1"))
            .await
            .expect("run");
        assert_eq!((r.requests, r.errors), (30, 0), "stream={stream}");
        assert_eq!(r.connections, 3);
        assert_eq!(
            r.mode,
            if stream {
                Mode::Stream
            } else {
                Mode::NonStream
            }
        );
        assert_eq!(r.ttfb.is_some(), stream);
        assert!(r.latency.p50_us <= r.latency.p99_us && r.latency.p99_us <= r.latency.max_us);
        if let Some(t) = r.ttfb {
            assert!(t.p50_us <= r.latency.max_us);
        }
        assert!(r.rps > 0.0);
        assert_eq!(r.server_cpu_us_per_request, None, "no pid, no CPU figure");
    }
    let seen = mock.requests();
    assert_eq!(seen.len(), 60);
    assert_eq!(seen[0].header("authorization"), Some("Bearer tg_bench"));
    assert_eq!(seen[0].body["messages"][1]["content"], "WORDS: 16");
    mock.shutdown().await;
}

#[tokio::test]
async fn failed_answers_and_cut_streams_are_errors() {
    let mock = tollgate_tests::mock::provider().spawn().await;
    for (model, stream) in [("mock-error-500", false), ("mock-cut-stream", true)] {
        match load::run(config(mock.addr(), stream, model)).await {
            Err(LoadError::AllFailed(first)) => assert!(!first.is_empty(), "{model}"),
            other => panic!("{model}: expected every request to fail, got {other:?}"),
        }
    }
    mock.shutdown().await;
}

#[tokio::test]
async fn a_closed_port_is_reported_before_anything_is_sent() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port");
    let err = load::run(config(port, false, "mock-1"))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, LoadError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn timed_runs_stop_by_themselves() {
    let mock = tollgate_tests::mock::provider()
        .record_requests(false)
        .spawn()
        .await;
    let mut c = config(mock.addr(), false, "mock-1");
    c.warmup = Duration::from_millis(50);
    c.stop = Stop::After(Duration::from_millis(200));
    // The mock runs in this process, so this process's CPU is the server's.
    c.server_pid = Some(std::process::id());
    let r = load::run(c).await.expect("run");
    assert!(r.requests > 0);
    assert_eq!(r.errors, 0);
    let cpu = r
        .server_cpu_us_per_request
        .expect("CPU per request is measured");
    assert!(cpu >= 0.0, "{cpu}");
    mock.shutdown().await;
}
