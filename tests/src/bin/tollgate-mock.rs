//! Runs the mock LLM provider on its own, for `bench/` and for poking at it by hand.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// An OpenAI-, Azure- and Anthropic-compatible mock provider (see `tollgate_tests::mock`).
#[derive(Debug, Parser)]
#[command(name = "tollgate-mock", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Delay before the first byte of every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between two writes of a stream, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Delay before the first byte for the `mock-slow` model, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    slow_delay_ms: u64,
    /// Leave usage out of every answer.
    #[arg(long)]
    no_usage: bool,
    /// Require this provider key (Bearer, api-key or x-api-key by path).
    #[arg(long, env = "TOLLGATE_MOCK_API_KEY")]
    api_key: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut mock = tollgate_tests::mock::provider()
        .listen(args.listen)
        .latency(Duration::from_millis(args.latency_ms))
        .chunk_delay(Duration::from_millis(args.chunk_delay_ms))
        .slow_delay(Duration::from_millis(args.slow_delay_ms))
        .usage(!args.no_usage);
    if let Some(key) = args.api_key {
        mock = mock.api_key(key);
    }
    eprintln!(
        "tollgate-mock: serving http://{}/v1 (Ctrl-C stops)",
        args.listen
    );
    match mock.run_blocking() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tollgate-mock: {err}");
            ExitCode::FAILURE
        }
    }
}
