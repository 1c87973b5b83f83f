//! POSTs tollgate makes on its own behalf (trace batches, approval webhooks), through
//! Pingora's connector so `https://` works as it does for providers. Never on a request's
//! path: only background tasks call this.

use std::time::Duration;

use bytes::Bytes;
use pingora_core::connectors::http::Connector;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_http::RequestHeader;
use tollgate_config::BaseUrl;

/// Response bodies are read (to reuse the connection) but never kept beyond this.
const MAX_REPLY: usize = 64 << 10;

/// A connection pool for background POSTs.
pub struct Outbound {
    connector: Connector,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            connector: Connector::new(None),
        }
    }
}

impl Outbound {
    /// POSTs `body` to `url` + `suffix`; the answer's status, or why there is none.
    pub async fn post(
        &self,
        url: &BaseUrl,
        suffix: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<u16, String> {
        let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", url.host))?;
        let mut peer = HttpPeer::new(addr, url.tls, url.host.clone());
        peer.options.connection_timeout = Some(timeout);
        peer.options.total_connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(30));
        peer.options.alpn = if url.tls { ALPN::H2H1 } else { ALPN::H1 };
        let exchange = async {
            let (mut s, _) = self
                .connector
                .get_http_session(&peer)
                .await
                .map_err(|e| format!("cannot connect: {}", e.etype().as_str()))?;
            let path = format!("{}{suffix}", url.path);
            let mut h = RequestHeader::build("POST", path.as_bytes(), None)
                .map_err(|_| "invalid request".to_string())?;
            let io = |e: Box<pingora_error::Error>| e.etype().as_str().to_string();
            h.insert_header("host", url.authority()).map_err(io)?;
            h.insert_header("content-length", body.len().to_string())
                .map_err(io)?;
            h.insert_header(
                "user-agent",
                concat!("tollgate/", env!("CARGO_PKG_VERSION")),
            )
            .map_err(io)?;
            for (k, v) in headers {
                h.insert_header(*k, v.as_str()).map_err(io)?;
            }
            s.write_request_header(Box::new(h)).await.map_err(io)?;
            s.write_request_body(body, true).await.map_err(io)?;
            s.finish_request_body().await.map_err(io)?;
            s.read_response_header().await.map_err(io)?;
            let status = s
                .response_header()
                .map(|r| r.status.as_u16())
                .ok_or("no response header")?;
            let mut read = 0usize;
            while let Some(chunk) = s.read_response_body().await.map_err(io)? {
                read += chunk.len();
                if read > MAX_REPLY {
                    return Ok(status);
                }
            }
            self.connector
                .release_http_session(s, &peer, peer.options.idle_timeout)
                .await;
            Ok(status)
        };
        tokio::time::timeout(timeout * 2, exchange)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}
