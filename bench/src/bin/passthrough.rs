//! The bare Pingora passthrough: the smallest `ProxyHttp` that forwards every request to one
//! upstream. It is the framework's own limit, the baseline tollgate's overhead is measured
//! against besides calling the mock directly.

use std::net::SocketAddr;

use async_trait::async_trait;
use clap::Parser;
use pingora::server::Server;
use pingora::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

#[derive(Debug, Parser)]
#[command(name = "passthrough")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8190")]
    listen: SocketAddr,
    /// Where every request goes (plain HTTP).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads; tollgate's default is one per core, so is this one's.
    #[arg(long)]
    threads: Option<usize>,
}

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Pingora's defaults put its pid file and upgrade socket at fixed paths in /tmp; a
    // name of this process's own keeps two runs (or a tollgate) from colliding.
    let scratch = std::env::temp_dir().join(format!("tollgate-passthrough-{}", std::process::id()));
    let conf = ServerConf {
        threads,
        pid_file: scratch.with_extension("pid").display().to_string(),
        upgrade_sock: scratch.with_extension("sock").display().to_string(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(
        &server.configuration,
        Passthrough {
            upstream: args.upstream,
        },
    );
    proxy.add_tcp(&args.listen.to_string());
    server.add_service(proxy);
    eprintln!("passthrough: {} -> {}", args.listen, args.upstream);
    server.run_forever()
}
