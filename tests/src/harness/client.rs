//! A small HTTP client for tests: JSON in, status + headers + body out, and streams read
//! event by event so a test can stop (disconnect) midway.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

#[derive(Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The OpenAI error code, if this is an error body.
    pub fn error_code(&self) -> Option<String> {
        self.json()["error"]["code"].as_str().map(str::to_string)
    }
    /// The `data:` payloads of an SSE body, `[DONE]` included.
    pub fn events(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .flat_map(|e| {
                e.lines()
                    .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Client {
    pub fn new(base: String, key: Option<String>) -> Client {
        Client {
            base,
            key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            r = r.bearer_auth(k);
        }
        r
    }

    async fn send(r: reqwest::RequestBuilder) -> Reply {
        let resp = r.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        Self::send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// Posts raw bytes (malformed bodies) with extra headers.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
        let mut r = self.request(reqwest::Method::POST, path).body(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::send(r).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// DELETE with extra headers (an MCP session id).
    pub async fn delete_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut r = self.request(reqwest::Method::DELETE, path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        Self::send(r).await
    }

    pub async fn chat(&self, body: Value) -> Reply {
        self.post("/v1/chat/completions", &body).await
    }

    /// Posts and reads the answer until `bytes_wanted` bytes arrived, then drops the
    /// connection: the agent disconnecting midway through a stream.
    pub async fn post_and_disconnect(
        &self,
        path: &str,
        body: &Value,
        bytes_wanted: usize,
    ) -> (u16, Bytes) {
        let mut resp = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("sent");
        let status = resp.status().as_u16();
        let mut got = Vec::new();
        while got.len() < bytes_wanted {
            match resp.chunk().await {
                Ok(Some(c)) => got.extend_from_slice(&c),
                _ => break,
            }
        }
        drop(resp);
        (status, Bytes::from(got))
    }
}
