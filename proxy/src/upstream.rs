//! Talking to providers: the request each provider kind expects, name resolution, and
//! pooled connections through Pingora's connector.
//!
//! The agent's key never reaches this module: headers are copied from the client minus
//! credentials and hop-by-hop fields, then the provider's own key is set.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pingora_core::connectors::http::Connector;
use pingora_core::protocols::ALPN;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use tollgate_config::{BaseUrl, Provider, ProviderKind, Timeouts};

use crate::api::Api;

/// Client headers never forwarded: credentials (the agent's key must not leave tollgate),
/// hop-by-hop fields, framing tollgate recomputes, and tollgate's own headers. `expect` is
/// hop-by-hop too: tollgate answers `100-continue` itself and sends the body at once, and a
/// provider's `100 Continue` would otherwise be read as its answer.
const DROPPED: &[&str] = &[
    "authorization",
    "api-key",
    "x-api-key",
    "x-cycles-api-key",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "accept-encoding",
    "cookie",
    "openai-organization",
    "openai-project",
];

fn dropped(name: &str) -> bool {
    DROPPED.contains(&name) || name.starts_with("x-tollgate-")
}

/// Anthropic betas an agent may turn on: ones that change limits, caching and streaming.
/// Betas that make the provider run tools or reach out itself (`mcp-client-*`,
/// `code-execution-*`, `computer-use-*`, `web-fetch-*`, `files-api-*`, ...) would bypass
/// tool policy and are dropped, as is anything not listed.
const ANTHROPIC_BETAS: &[&str] = &[
    "prompt-caching-2024-07-31",
    "extended-cache-ttl-2025-04-11",
    "token-efficient-tools-2025-02-19",
    "fine-grained-tool-streaming-2025-05-14",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "context-1m-2025-08-07",
    "max-tokens-3-5-sonnet-2024-07-15",
    "pdfs-2024-09-25",
];

/// The agent's `anthropic-beta` values tollgate passes on (comma-separated, any number
/// of headers), or `None` when none is left.
fn allowed_betas(client: &RequestHeader) -> Option<String> {
    let kept: Vec<&str> = client
        .headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| ANTHROPIC_BETAS.contains(b))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// The header names a `Connection` header lists: hop-by-hop for this one connection, so
/// never passed to the other side (RFC 9110 section 7.6.1), whichever way the message goes.
pub fn connection_named(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Why a provider could not be used; decides whether the next provider is tried.
#[derive(Debug)]
pub enum Failure {
    Connect(String),
    Timeout(String),
}

impl Failure {
    pub fn describe(&self) -> &str {
        match self {
            Failure::Connect(m) | Failure::Timeout(m) => m,
        }
    }
}

/// The request line and headers for `provider`.
pub fn request_header(
    provider: &Provider,
    api: Api,
    model: &str,
    client: &RequestHeader,
    body_len: usize,
) -> Result<RequestHeader, String> {
    let base = &provider.base_url.path;
    let path = match provider.kind {
        ProviderKind::Azure => {
            let deployment = provider
                .deployments
                .get(model)
                .map(String::as_str)
                .unwrap_or(model);
            let op = api.upstream_path();
            let version = provider.api_version.as_deref().unwrap_or_default();
            let deployment = path_segment(deployment);
            format!("{base}/openai/deployments/{deployment}{op}?api-version={version}")
        }
        ProviderKind::OpenAi | ProviderKind::Anthropic => format!("{base}{}", api.upstream_path()),
    };
    let mut req = RequestHeader::build("POST", path.as_bytes(), Some(client.headers.len() + 4))
        .map_err(|_| format!("invalid upstream path for model `{model}`"))?;
    let hop_by_hop = connection_named(&client.headers);
    for (name, value) in client.headers.iter() {
        let name_str = name.as_str();
        if !dropped(name_str)
            && name_str != "anthropic-beta"
            && !hop_by_hop.iter().any(|h| h == name_str)
        {
            let _ = req.append_header(name.clone(), value.clone());
        }
    }
    if let Some(betas) = allowed_betas(client) {
        let _ = req.insert_header("anthropic-beta", betas);
    }
    let set = |req: &mut RequestHeader, name: &'static str, value: &str| {
        let _ = req.insert_header(name, value);
    };
    set(&mut req, "host", &provider.base_url.authority());
    set(&mut req, "content-length", &body_len.to_string());
    set(&mut req, "content-type", "application/json");
    // tollgate parses every response, so it asks for it uncompressed.
    set(&mut req, "accept-encoding", "identity");
    if let Some(key) = &provider.api_key {
        match provider.kind {
            ProviderKind::OpenAi => set(
                &mut req,
                "authorization",
                &format!("Bearer {}", key.expose()),
            ),
            ProviderKind::Azure => set(&mut req, "api-key", key.expose()),
            ProviderKind::Anthropic if api == Api::AnthropicMessages => {
                set(&mut req, "x-api-key", key.expose())
            }
            // Anthropic's OpenAI-compatible endpoints take a bearer token.
            ProviderKind::Anthropic => set(
                &mut req,
                "authorization",
                &format!("Bearer {}", key.expose()),
            ),
        }
    }
    if provider.kind == ProviderKind::Anthropic && !req.headers.contains_key("anthropic-version") {
        set(&mut req, "anthropic-version", &provider.anthropic_version);
    }
    Ok(req)
}

/// `text` as one URL path segment: everything but RFC 3986's unreserved characters is
/// percent-encoded, so a model name can never add a segment, a query or a fragment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A host's addresses and when they were resolved.
type Resolved = (Vec<SocketAddr>, Instant);

/// Resolved provider addresses, kept for a minute so a request does not wait on DNS.
#[derive(Default)]
pub struct Dns {
    cache: Mutex<HashMap<(String, u16), Resolved>>,
}

const DNS_TTL: Duration = Duration::from_secs(60);

impl Dns {
    /// Every address of `host`, in the resolver's order.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
        let key = (host.to_string(), port);
        if let Some((addrs, at)) = self.cache.lock().expect("dns cache").get(&key)
            && at.elapsed() < DNS_TTL
        {
            return Ok(addrs.clone());
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Failure::Connect(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Failure::Connect(format!("{host} has no address")));
        }
        self.remember(key, addrs.clone());
        Ok(addrs)
    }

    fn remember(&self, key: (String, u16), addrs: Vec<SocketAddr>) {
        self.cache
            .lock()
            .expect("dns cache")
            .insert(key, (addrs, Instant::now()));
    }
}

/// Pooled upstream connections.
pub struct Upstreams {
    connector: Connector,
    dns: Dns,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams {
            connector: Connector::new(None),
            dns: Dns::default(),
        }
    }
}

impl Upstreams {
    /// A connection to `provider`: each of its addresses in turn until one accepts, so one
    /// dead address (an IPv6 route that does not work, a drained node) is not an outage.
    pub async fn connect(
        &self,
        provider: &Provider,
        timeouts: &Timeouts,
    ) -> Result<(HttpSession, HttpPeer), Failure> {
        self.connect_url(&provider.base_url, timeouts).await
    }

    /// A connection to the host of `url` (a provider's or an MCP server's), trying each of
    /// its addresses in turn.
    pub async fn connect_url(
        &self,
        url: &BaseUrl,
        timeouts: &Timeouts,
    ) -> Result<(HttpSession, HttpPeer), Failure> {
        let addrs = self.dns.resolve(&url.host, url.port).await?;
        let mut last = None;
        for addr in addrs {
            let peer = peer(url, addr, timeouts);
            // Pingora's connect future (pool lookup, TCP, TLS) is ~8.8 KB. Boxed, it lives
            // only while connecting; inline, it would size every request's future for the
            // request's whole life, ~6 KB more per open stream (docs/benchmarks.md, Memory).
            match Box::pin(self.connector.get_http_session(&peer)).await {
                Ok((session, _reused)) => return Ok((session, peer)),
                Err(e) => {
                    last = Some(match e.etype() {
                        pingora_error::ErrorType::ConnectTimedout => Failure::Timeout(format!(
                            "connecting timed out: {}",
                            e.etype().as_str()
                        )),
                        _ => Failure::Connect(format!("cannot connect: {}", e.etype().as_str())),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| Failure::Connect("no address to connect to".into())))
    }

    /// Returns a connection whose response was read to its end to the pool.
    pub async fn release(&self, session: HttpSession, peer: &HttpPeer) {
        self.connector
            .release_http_session(session, peer, peer.options.idle_timeout)
            .await;
    }
}

/// One address of an upstream, with tollgate's timeouts.
fn peer(url: &BaseUrl, addr: SocketAddr, timeouts: &Timeouts) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, url.tls, url.host.clone());
    peer.options.connection_timeout = Some(timeouts.connect);
    peer.options.total_connection_timeout = Some(timeouts.connect);
    peer.options.read_timeout = Some(timeouts.idle);
    peer.options.write_timeout = Some(timeouts.idle);
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    peer.options.alpn = if url.tls { ALPN::H2H1 } else { ALPN::H1 };
    peer
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_listed_anthropic_betas_pass() {
        let mut client = pingora_http::RequestHeader::build("POST", b"/v1/messages", None).unwrap();
        client
            .append_header(
                "anthropic-beta",
                "mcp-client-2025-04-04, prompt-caching-2024-07-31",
            )
            .unwrap();
        client
            .append_header("anthropic-beta", "code-execution-2025-05-22")
            .unwrap();
        assert_eq!(
            super::allowed_betas(&client).as_deref(),
            Some("prompt-caching-2024-07-31")
        );
        let mut only_bad = pingora_http::RequestHeader::build("POST", b"/", None).unwrap();
        only_bad
            .append_header("anthropic-beta", "mcp-client-2025-04-04")
            .unwrap();
        assert_eq!(super::allowed_betas(&only_bad), None);
    }
    #[test]
    fn a_model_name_stays_one_path_segment() {
        assert_eq!(super::path_segment("gpt-4o"), "gpt-4o");
        assert_eq!(
            super::path_segment("gpt-4o/chat/completions?api-version=1#/gpt-4o-mini"),
            "gpt-4o%2Fchat%2Fcompletions%3Fapi-version%3D1%23%2Fgpt-4o-mini"
        );
        assert_eq!(super::path_segment("ft:a b"), "ft%3Aa%20b");
    }

    use super::*;
    use tollgate_config::Config;

    fn provider(yaml: &str) -> Provider {
        let cfg = Config::from_yaml(yaml, &|_| Some("sk-provider".into())).expect("valid");
        cfg.providers[0].clone()
    }

    fn client() -> RequestHeader {
        let mut c = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        c.insert_header("authorization", "Bearer tg_agentkey")
            .unwrap();
        c.insert_header("x-api-key", "tg_agentkey").unwrap();
        c.insert_header("x-cycles-api-key", "tg_agentkey").unwrap();
        c.insert_header("x-tollgate-run", "r1").unwrap();
        c.insert_header("x-stainless-lang", "python").unwrap();
        c.insert_header("accept-encoding", "gzip").unwrap();
        c
    }

    fn header<'a>(r: &'a RequestHeader, name: &str) -> Option<&'a str> {
        r.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn openai_gets_the_provider_key_and_never_the_agent_key() {
        let p = provider(
            "providers: [{ name: o, kind: openai, base_url: 'https://api.openai.com/v1', api_key_env: K, models: ['*'] }]",
        );
        let r = request_header(&p, Api::ChatCompletions, "gpt-4o", &client(), 10).unwrap();
        assert_eq!(r.uri.path(), "/v1/chat/completions");
        assert_eq!(header(&r, "authorization"), Some("Bearer sk-provider"));
        assert_eq!(header(&r, "x-api-key"), None);
        assert_eq!(header(&r, "x-tollgate-run"), None);
        assert_eq!(header(&r, "x-stainless-lang"), Some("python"));
        assert_eq!(header(&r, "accept-encoding"), Some("identity"));
        assert_eq!(header(&r, "host"), Some("api.openai.com"));
        assert_eq!(header(&r, "content-length"), Some("10"));
        let all = format!("{:?}", r.headers);
        assert!(!all.contains("tg_agentkey"));
    }

    #[test]
    fn expect_and_headers_named_in_connection_stay_on_the_agent_side() {
        let p = provider(
            "providers: [{ name: o, kind: openai, base_url: 'https://api.openai.com/v1', api_key_env: K, models: ['*'] }]",
        );
        let mut c = client();
        c.insert_header("expect", "100-continue").unwrap();
        c.insert_header("connection", "keep-alive, X-Hop-Secret , x-other")
            .unwrap();
        c.insert_header("x-hop-secret", "internal").unwrap();
        c.insert_header("x-other", "1").unwrap();
        let r = request_header(&p, Api::ChatCompletions, "gpt-4o", &c, 10).unwrap();
        assert_eq!(header(&r, "expect"), None);
        assert_eq!(header(&r, "connection"), None);
        assert_eq!(header(&r, "x-hop-secret"), None);
        assert_eq!(header(&r, "x-other"), None);
        assert_eq!(header(&r, "x-stainless-lang"), Some("python"));
    }

    #[tokio::test]
    async fn every_address_is_tried_until_one_accepts() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let port = open.local_addr().unwrap().port();
        let p = provider(&format!(
            "providers: [{{ name: o, kind: openai, base_url: 'http://provider.test:{port}/v1', models: ['*'] }}]"
        ));
        let up = Upstreams::default();
        // provider.test resolves to a dead address first, then to the live one.
        let dead = SocketAddr::new(closed.ip(), closed.port());
        up.dns.remember(
            ("provider.test".into(), port),
            vec![dead, open.local_addr().unwrap()],
        );
        let timeouts = Timeouts {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(5),
            idle: Duration::from_secs(5),
            request_header: Duration::from_secs(5),
        };
        let accepted = tokio::spawn(async move { open.accept().await.map(|_| ()) });
        let (_session, peer) = up.connect(&p, &timeouts).await.expect("the second address");
        assert_eq!(peer._address.to_string(), format!("127.0.0.1:{port}"));
        accepted.await.unwrap().unwrap();
        up.dns.remember(("provider.test".into(), port), vec![dead]);
        assert!(matches!(
            up.connect(&p, &timeouts).await,
            Err(Failure::Connect(_))
        ));
    }

    #[test]
    fn azure_uses_deployment_paths_and_api_key() {
        let p = provider(
            "providers: [{ name: a, kind: azure, base_url: 'https://r.openai.azure.com', api_key_env: K, api_version: '2024-10-21', models: ['*'], deployments: { gpt-4o: prod-4o } }]",
        );
        let r = request_header(&p, Api::ChatCompletions, "gpt-4o", &client(), 1).unwrap();
        assert_eq!(
            r.uri.to_string(),
            "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(header(&r, "api-key"), Some("sk-provider"));
        assert_eq!(header(&r, "authorization"), None);
    }

    #[test]
    fn anthropic_messages_get_version_and_x_api_key() {
        let p = provider(
            "providers: [{ name: c, kind: anthropic, base_url: 'https://api.anthropic.com/v1', api_key_env: K, models: ['claude-*'] }]",
        );
        let r =
            request_header(&p, Api::AnthropicMessages, "claude-sonnet-4", &client(), 1).unwrap();
        assert_eq!(r.uri.path(), "/v1/messages");
        assert_eq!(header(&r, "x-api-key"), Some("sk-provider"));
        assert_eq!(header(&r, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(&r, "authorization"), None);
    }
}
