//! Runs one load scenario against an OpenAI-compatible server and prints its result as one
//! JSON line (see `tollgate_bench::stats::LoadResult`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tollgate_bench::body::BodySpec;
use tollgate_bench::load::{self, LoadConfig, Stop};
use tollgate_bench::stats::Record;

/// Keep-alive connections sending `POST /v1/chat/completions`, one request in flight each.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// The server to call.
    #[arg(long)]
    addr: SocketAddr,
    /// The label the result line carries.
    #[arg(long, default_value = "direct")]
    target: String,
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// Sent as a bearer token.
    #[arg(long, env = "BENCH_KEY")]
    key: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Seconds of requests sent before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Seconds measured (ignored with --requests).
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Stop after this many measured requests instead of after a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Ask for an SSE stream.
    #[arg(long)]
    stream: bool,
    #[arg(long, default_value = "mock-1")]
    model: String,
    /// Tokens the mock answers with.
    #[arg(long, default_value_t = 16)]
    words: u32,
    /// Size of the system prompt in bytes.
    #[arg(long, default_value_t = 1024)]
    prompt_bytes: usize,
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// The server process whose CPU time per request is reported (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Threads of the generator's runtime (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = LoadConfig {
        target: args.target,
        addr: args.addr,
        path: args.path,
        key: args.key,
        connections: args.connections.max(1),
        warmup: seconds(args.warmup_secs),
        stop: match args.requests {
            Some(n) => Stop::Count(n),
            None => Stop::After(seconds(args.duration_secs)),
        },
        body: BodySpec {
            model: args.model,
            stream: args.stream,
            words: args.words,
            prompt_bytes: args.prompt_bytes,
            max_tokens: args.max_tokens,
        },
        server_pid: args.server_pid,
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(load::run(config)) {
        Ok(result) => {
            let line = serde_json::to_string(&Record::Load(result)).expect("a result serialises");
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}
