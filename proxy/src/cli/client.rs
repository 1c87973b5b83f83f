//! A minimal HTTP/1.1 client for the admin API: the admin listener is plain HTTP on a
//! trusted interface, so the CLI needs no TLS and no async runtime.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

pub struct AdminClient {
    host: String,
    token: Option<String>,
}

/// A reply from the admin API.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl AdminClient {
    pub fn new(url: &str, token: Option<String>) -> Result<AdminClient, String> {
        let host = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--admin-url `{url}` must start with http://"))?
            .trim_end_matches('/')
            .to_string();
        Ok(AdminClient { host, token })
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
        let mut stream = TcpStream::connect(&self.host)
            .map_err(|e| format!("cannot reach the admin API at http://{}: {e}", self.host))?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            payload.len()
        );
        if let Some(t) = &self.token {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&payload);
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("sending to the admin API failed: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .map_err(|e| format!("reading the admin API's answer failed: {e}"))?;
        parse(&raw)
    }
}

fn parse(raw: &[u8]) -> Result<Reply, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the admin API sent an incomplete answer")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("the admin API sent no status")?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok(Reply { status, body })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = data.get(end + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body["a"], 1);
        let r = parse(b"HTTP/1.1 401 X\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"b\r\n4\r\n\":2}\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.status, 401);
        assert_eq!(r.body["b"], 2);
    }
}
