//! Helpers for the mock provider's tests: a raw HTTP/1.1 client that shows exactly what came
//! over the wire (including a cut), and a strict SSE parser. Included by the `mock_*` tests.
#![allow(dead_code)]

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP response as received.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when chunked.
    pub body: Vec<u8>,
    /// The body ended properly: the final chunk arrived, or all of the content-length.
    pub complete: bool,
    /// The HTTP chunks of a chunked body: hyper sends each of the mock's writes as one.
    pub chunks: Vec<Vec<u8>>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("body is UTF-8")
    }

    /// The body as SSE events, checked to be well-formed.
    pub fn events(&self) -> Vec<Event> {
        parse_sse(&self.text())
    }
}

/// Sends one request on a fresh connection and reads until the server closes it.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the mock");
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes).await.expect("send the request");
    let mut raw = Vec::new();
    // A reset after a cut is an ending like any other: keep what arrived.
    let _ = stream.read_to_end(&mut raw).await;
    parse_response(&raw)
}

/// POSTs JSON to an OpenAI path with the given bearer key.
pub async fn post(addr: SocketAddr, path: &str, key: &str, body: &Value) -> Reply {
    let auth = format!("Bearer {key}");
    let body = body.to_string();
    send(
        addr,
        "POST",
        path,
        &[("authorization", &auth)],
        Some(body.as_bytes()),
    )
    .await
}

/// POSTs JSON to the mock's Chat Completions endpoint without a key.
pub async fn chat(addr: SocketAddr, body: &Value) -> Reply {
    post(addr, "/v1/chat/completions", "unused", body).await
}

/// POSTs JSON to an Anthropic path with the required headers.
pub async fn anthropic(addr: SocketAddr, key: &str, body: &Value) -> Reply {
    let body = body.to_string();
    send(
        addr,
        "POST",
        "/v1/messages",
        &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
        Some(body.as_bytes()),
    )
    .await
}

pub fn parse_response(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, v)| v.clone())
    };
    let (chunks, complete) = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        (
            vec![rest[..rest.len().min(length)].to_vec()],
            rest.len() >= length,
        )
    } else {
        (vec![rest.to_vec()], true)
    };
    Reply {
        status,
        headers,
        body: chunks.concat(),
        complete,
        chunks,
    }
}

/// Splits a chunked body into its chunks; incomplete when the terminating chunk never came.
fn dechunk(mut rest: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut chunks = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (chunks, false);
        };
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
            return (chunks, false);
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (chunks, true);
        }
        if rest.len() < size + 2 {
            chunks.push(rest[..rest.len().min(size)].to_vec());
            return (chunks, false);
        }
        chunks.push(rest[..size].to_vec());
        rest = &rest[size + 2..];
    }
}

/// One server-sent event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|err| panic!("event data is not JSON ({err}): {}", self.data))
    }
}

/// Parses an SSE body strictly: `\n\n`-terminated blocks of `event:`/`data:` lines only.
pub fn parse_sse(text: &str) -> Vec<Event> {
    assert!(
        text.ends_with("\n\n"),
        "stream does not end with a blank line: {text:?}"
    );
    text.strip_suffix("\n\n")
        .unwrap_or(text)
        .split("\n\n")
        .map(|block| {
            let mut event = Event {
                event: None,
                data: String::new(),
            };
            for line in block.split('\n') {
                if let Some(name) = line.strip_prefix("event: ") {
                    assert!(event.event.is_none(), "two event lines in {block:?}");
                    event.event = Some(name.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    assert!(event.data.is_empty(), "multi-line data in {block:?}");
                    event.data = data.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            event
        })
        .collect()
}
