//! The mock's HTTP side: accepts connections, records each request, checks the key, routes
//! to the endpoint that writes the answer, and applies the fault the model name asks for.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::body::{MockBody, Step};
use super::faults::{self, Fault, Flavor, ProviderError};
use super::rng::{Rng, fnv1a};
use super::{RecordedRequest, State, anthropic, chat, legacy, responses, sse};

/// Accepts connections until told to stop; dropping the connection set then closes every
/// connection still open, hung ones included.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            accepted = listener.accept() => {
                // An accept error (e.g. too many open files) concerns one connection only.
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_connection(stream, Arc::clone(&state)));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<State>) {
    // Small stream writes must leave at once, not wait for Nagle to batch them.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(request, Arc::clone(&state)));
    // A connection error is the client's or an intended cut: nothing to report.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The endpoints the mock knows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// `GET /v1/models` (`None`) or `GET /v1/models/{id}`.
    Models(Option<String>),
    /// An endpoint that generates an answer.
    Generate(Api),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Chat,
    Responses,
    Embeddings,
    Completions,
    Messages,
}

fn route(method: &Method, path: &str) -> Option<(Endpoint, Flavor, Option<String>)> {
    let post = method == Method::POST;
    let get = method == Method::GET;
    let openai = |api| Some((Endpoint::Generate(api), Flavor::OpenAi, None));
    match path {
        "/v1/chat/completions" if post => openai(Api::Chat),
        "/v1/responses" if post => openai(Api::Responses),
        "/v1/embeddings" if post => openai(Api::Embeddings),
        "/v1/completions" if post => openai(Api::Completions),
        "/v1/messages" if post => {
            Some((Endpoint::Generate(Api::Messages), Flavor::Anthropic, None))
        }
        "/v1/models" if get => Some((Endpoint::Models(None), Flavor::OpenAi, None)),
        _ if get => path
            .strip_prefix("/v1/models/")
            .filter(|id| !id.is_empty())
            .map(|id| (Endpoint::Models(Some(id.to_owned())), Flavor::OpenAi, None)),
        _ if post => {
            let rest = path.strip_prefix("/openai/deployments/")?;
            let (deployment, operation) = rest.split_once('/')?;
            let api = match operation {
                "chat/completions" => Api::Chat,
                "embeddings" => Api::Embeddings,
                "completions" => Api::Completions,
                _ => return None,
            };
            (!deployment.is_empty()).then(|| {
                (
                    Endpoint::Generate(api),
                    Flavor::Azure,
                    Some(deployment.to_owned()),
                )
            })
        }
        _ => None,
    }
}

/// What an endpoint answers before faults and framing are applied.
pub(crate) enum Answer {
    Json(Value),
    Stream(Vec<String>),
}

/// Everything an endpoint needs to write its answer.
pub(crate) struct Exchange<'a> {
    pub(crate) body: &'a Value,
    pub(crate) model: String,
    /// Usage figures may be sent (the builder allows it and the model is not `mock-no-usage`).
    pub(crate) usage: bool,
    pub(crate) reasoning: bool,
    /// Seeded by the request body only: the same request is chunked the same way.
    pub(crate) rng: Rng,
    /// Seeded by the body and a serial: ids are unique yet reproducible run to run.
    pub(crate) ids: Rng,
    pub(crate) created: u64,
}

impl Exchange<'_> {
    /// The output limit among `keys` (the smallest when several are set), refusing
    /// values below `minimum` as the providers do.
    pub(crate) fn limit(
        &self,
        keys: &[&str],
        minimum: u64,
        flavor: Flavor,
    ) -> Result<Option<u32>, ProviderError> {
        let mut limit: Option<u32> = None;
        for key in keys {
            let Some(value) = self.body.get(*key).filter(|value| !value.is_null()) else {
                continue;
            };
            let Some(n) = value.as_u64().filter(|n| *n >= minimum) else {
                let message = format!(
                    "Invalid '{key}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead."
                );
                return Err(faults::error(
                    flavor,
                    StatusCode::BAD_REQUEST,
                    &message,
                    Some("integer_below_min_value"),
                    Some(key),
                ));
            };
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            limit = Some(limit.map_or(n, |current| current.min(n)));
        }
        Ok(limit)
    }

    /// Whether the request asked for a stream.
    pub(crate) fn stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// A 400 naming a missing required field.
    pub(crate) fn missing(&self, flavor: Flavor, field: &str) -> ProviderError {
        let message = match flavor {
            Flavor::Anthropic => format!("{field}: Field required"),
            Flavor::OpenAi | Flavor::Azure => format!("Missing required parameter: '{field}'."),
        };
        faults::error(
            flavor,
            StatusCode::BAD_REQUEST,
            &message,
            Some("missing_required_parameter"),
            Some(field),
        )
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<MockBody>, Infallible> {
    let (parts, body) = request.into_parts();
    // A body that fails to arrive is recorded as empty; the answer below then says so.
    let raw_body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: path_and_query,
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&raw_body).unwrap_or(Value::Null),
        raw_body,
    };
    // Deciding the answer sends nothing, so recording right after still precedes every byte
    // of the answer (and the wait of a hang or a slow model).
    let (response, fault) = respond(&recorded, parts.uri.path(), parts.uri.query(), &state);
    state.record(recorded);
    let config = &state.config;
    match fault {
        Fault::Hang => std::future::pending::<()>().await,
        Fault::Slow => tokio::time::sleep(config.slow_delay).await,
        _ => {}
    }
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    Ok(response)
}

/// Decides the whole answer, returning the fault that still has to be played in time.
fn respond(
    request: &RecordedRequest,
    path: &str,
    query: Option<&str>,
    state: &State,
) -> (Response<MockBody>, Fault) {
    let method = Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::GET);
    let Some((endpoint, flavor, deployment)) = route(&method, path) else {
        let message = format!("Invalid URL ({} {path})", request.method);
        let error = faults::error(Flavor::OpenAi, StatusCode::NOT_FOUND, &message, None, None);
        return (error_response(Flavor::OpenAi, &error), Fault::None);
    };
    match prepare(request, query, state, endpoint, flavor, deployment) {
        Ok(prepared) => prepared,
        Err(error) => (error_response(flavor, &error), Fault::None),
    }
}

fn prepare(
    request: &RecordedRequest,
    query: Option<&str>,
    state: &State,
    endpoint: Endpoint,
    flavor: Flavor,
    deployment: Option<String>,
) -> Result<(Response<MockBody>, Fault), ProviderError> {
    check_key(request, flavor, state.config.api_key.as_deref())?;
    match endpoint {
        Endpoint::Models(id) => {
            let listing = legacy::models(id.as_deref());
            Ok((json_response(flavor, listing, Fault::None), Fault::None))
        }
        Endpoint::Generate(api) => generate(request, query, state, api, flavor, deployment),
    }
}

fn generate(
    request: &RecordedRequest,
    query: Option<&str>,
    state: &State,
    api: Api,
    flavor: Flavor,
    deployment: Option<String>,
) -> Result<(Response<MockBody>, Fault), ProviderError> {
    let bad_request =
        |message: &str| faults::error(flavor, StatusCode::BAD_REQUEST, message, None, None);
    let has_api_version = query
        .unwrap_or("")
        .split('&')
        .any(|pair| pair.starts_with("api-version="));
    if flavor == Flavor::Azure && !has_api_version {
        return Err(faults::error(
            flavor,
            StatusCode::NOT_FOUND,
            "Resource not found: the api-version query parameter is required.",
            Some("404"),
            None,
        ));
    }
    if flavor == Flavor::Anthropic && request.header("anthropic-version").is_none() {
        return Err(bad_request("anthropic-version: header is required"));
    }
    if !request.body.is_object() {
        return Err(bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        ));
    }
    let model = match (
        request.body.get("model").and_then(Value::as_str),
        deployment,
    ) {
        (Some(model), _) => model.to_owned(),
        (None, Some(deployment)) => deployment,
        (None, None) => return Err(bad_request("you must provide a model parameter")),
    };
    let fault = faults::for_model(&model);
    if let Fault::Error(status) = fault {
        return Err(faults::injected(flavor, status));
    }
    let seed = fnv1a(&request.raw_body);
    let mut exchange = Exchange {
        body: &request.body,
        usage: state.config.usage && fault != Fault::NoUsage,
        reasoning: faults::is_reasoning(&model),
        model,
        rng: Rng::new(seed),
        ids: Rng::new(seed ^ state.next_serial().wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        created: unix_now(),
    };
    let answer = match api {
        Api::Chat => chat::answer(&mut exchange, flavor)?,
        Api::Responses => responses::answer(&mut exchange)?,
        Api::Embeddings => legacy::embeddings(&mut exchange, flavor)?,
        Api::Completions => legacy::completions(&mut exchange, flavor)?,
        Api::Messages => anthropic::answer(&mut exchange)?,
    };
    let response = match answer {
        Answer::Json(json) => json_response(flavor, json, fault),
        Answer::Stream(events) => stream_response(flavor, events, fault, &mut exchange, state),
    };
    Ok((response, fault))
}

fn check_key(
    request: &RecordedRequest,
    flavor: Flavor,
    key: Option<&str>,
) -> Result<(), ProviderError> {
    let Some(key) = key else {
        return Ok(());
    };
    let bearer = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "));
    let (presented, message) = match flavor {
        Flavor::OpenAi => (
            bearer,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        ),
        Flavor::Azure => (
            request.header("api-key").or(bearer),
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        ),
        // Recent Anthropic SDKs send the key as a bearer token; older ones as x-api-key.
        Flavor::Anthropic => (request.header("x-api-key").or(bearer), "invalid x-api-key"),
    };
    if presented == Some(key) {
        return Ok(());
    }
    Err(faults::error(
        flavor,
        StatusCode::UNAUTHORIZED,
        message,
        Some("invalid_api_key"),
        None,
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn base(flavor: Flavor, status: StatusCode, content_type: &'static str) -> http::response::Builder {
    let request_id = match flavor {
        Flavor::Anthropic => "request-id",
        Flavor::OpenAi | Flavor::Azure => "x-request-id",
    };
    let builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header(HeaderName::from_static(request_id), "req_mock");
    // The account headers the real providers send: a gateway must not pass them on.
    match flavor {
        Flavor::Anthropic => builder.header("anthropic-organization-id", "org-mock-anthropic"),
        Flavor::OpenAi | Flavor::Azure => builder
            .header("openai-processing-ms", "1")
            .header("openai-organization", "org-mock")
            .header("openai-project", "proj_mock"),
    }
}

fn finish(builder: http::response::Builder, body: MockBody) -> Response<MockBody> {
    // Every header above is a valid static value, so building cannot fail; fall back anyway.
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(MockBody::full(Bytes::new())))
}

fn error_response(flavor: Flavor, error: &ProviderError) -> Response<MockBody> {
    let mut builder = base(flavor, error.status, "application/json");
    if let Some(seconds) = error.retry_after {
        builder = builder
            .header("retry-after", seconds)
            .header("x-ratelimit-limit-requests", "1")
            .header("x-ratelimit-remaining-requests", "0")
            .header("x-ratelimit-reset-requests", format!("{seconds}s"));
    }
    if error.status == StatusCode::TOO_MANY_REQUESTS || error.status.is_server_error() {
        builder = builder.header("x-should-retry", "true");
    }
    finish(builder, MockBody::full(error.body.to_string()))
}

fn json_response(flavor: Flavor, json: Value, fault: Fault) -> Response<MockBody> {
    let bytes = Bytes::from(json.to_string());
    let builder = base(flavor, StatusCode::OK, "application/json");
    match fault {
        Fault::CutStream => {
            // Announce the whole length, send half, then hang up.
            let half = bytes.slice(..bytes.len() / 2);
            let builder = builder.header(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            finish(builder, MockBody::steps(vec![Step::Write(half), Step::Cut]))
        }
        Fault::Garbage => finish(
            builder,
            MockBody::full("<html><body>502 Bad Gateway</body></html> {\"id\": not json"),
        ),
        _ => finish(builder, MockBody::full(bytes)),
    }
}

fn stream_response(
    flavor: Flavor,
    mut events: Vec<String>,
    fault: Fault,
    exchange: &mut Exchange<'_>,
    state: &State,
) -> Response<MockBody> {
    let cut = fault == Fault::CutStream;
    if cut {
        // Enough to have started (role, first pieces), never the end of the stream.
        let keep = (events.len() / 2)
            .max(2)
            .min(events.len().saturating_sub(1));
        events.truncate(keep);
    }
    if fault == Fault::Garbage {
        let malformed = match flavor {
            Flavor::Anthropic => "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"unterminated\n\n".to_owned(),
            Flavor::OpenAi | Flavor::Azure => "data: {\"id\": \"chatcmpl-garbage\", \"choices\": [{\"delta\": {\"content\": broken}\n\n".to_owned(),
        };
        events.insert(1.min(events.len()), malformed);
    }
    if fault == Fault::HugeEvent {
        let content = "x".repeat(faults::HUGE_EVENT_BYTES);
        let chunk = serde_json::json!({
            "id": "chatcmpl-huge", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": content}}]
        });
        events.insert(1.min(events.len()), sse::data(&chunk));
    }
    let writes = sse::writes(&events, &mut exchange.rng);
    let steps = MockBody::plan(writes, state.config.chunk_delay, cut);
    let builder = base(flavor, StatusCode::OK, "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache");
    finish(builder, MockBody::steps(steps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let post = Method::POST;
        let get = Method::GET;
        let openai = |api| Some((Endpoint::Generate(api), Flavor::OpenAi, None));
        let azure = |api| {
            Some((
                Endpoint::Generate(api),
                Flavor::Azure,
                Some("dep".to_owned()),
            ))
        };
        let cases = [
            (&post, "/v1/chat/completions", openai(Api::Chat)),
            (&post, "/v1/responses", openai(Api::Responses)),
            (&post, "/v1/embeddings", openai(Api::Embeddings)),
            (&post, "/v1/completions", openai(Api::Completions)),
            (
                &post,
                "/v1/messages",
                Some((Endpoint::Generate(Api::Messages), Flavor::Anthropic, None)),
            ),
            (
                &get,
                "/v1/models",
                Some((Endpoint::Models(None), Flavor::OpenAi, None)),
            ),
            (
                &get,
                "/v1/models/gpt-4o",
                Some((
                    Endpoint::Models(Some("gpt-4o".into())),
                    Flavor::OpenAi,
                    None,
                )),
            ),
            (
                &post,
                "/openai/deployments/dep/chat/completions",
                azure(Api::Chat),
            ),
            (
                &post,
                "/openai/deployments/dep/embeddings",
                azure(Api::Embeddings),
            ),
            (
                &post,
                "/openai/deployments/dep/completions",
                azure(Api::Completions),
            ),
            (&get, "/v1/chat/completions", None),
            (&post, "/openai/deployments//chat/completions", None),
            (&post, "/openai/deployments/dep/images", None),
            (&post, "/v2/chat/completions", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(method, path), expected, "{method} {path}");
        }
    }
}
