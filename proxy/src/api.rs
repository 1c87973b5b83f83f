//! The agent-facing endpoints and the shape checks tollgate makes before trusting a body.
//!
//! Unknown fields pass through untouched; only the fields tollgate reads are checked, so a
//! wrong type is answered here in the OpenAI shape instead of failing deep in a stage.

use serde_json::Value;

use crate::error::GateError;

pub use tollgate_types::Api;

/// The endpoint a request was for: the `endpoint` metric label and audit field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Llm(Api),
    Models,
    Decide,
    Reservations,
    Agents,
    /// The Cycles protocol's endpoints (`crate::cycles`).
    Cycles,
    /// `/mcp` and `/mcp/{server}`: the MCP gateway.
    Mcp,
    /// `/readyz` asking the listener whether it belongs to this process.
    Probe,
    /// No route matched (or the request failed before routing).
    Unknown,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Llm(api) => api.as_str(),
            Endpoint::Models => "models",
            Endpoint::Decide => "decide",
            Endpoint::Reservations => "reservations",
            Endpoint::Agents => "agents",
            Endpoint::Cycles => "cycles",
            Endpoint::Mcp => "mcp",
            Endpoint::Probe => "probe",
            Endpoint::Unknown => "unknown",
        }
    }
}

/// What an agent-facing request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Llm {
        api: Api,
        /// Set for Azure-style paths (`/openai/deployments/{d}/...`): the model to use when
        /// the body names none.
        deployment: Option<String>,
    },
    Models,
    Decide,
    Reserve,
    Commit(String),
    Release(String),
    /// A sub-agent minted by the calling agent.
    Delegate,
    /// A Cycles protocol operation.
    Cycles(crate::cycles::Op),
    /// The MCP gateway: one server (`/mcp/{server}`) or all the policy names (`/mcp`).
    Mcp {
        server: Option<String>,
    },
}

impl Route {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Route::Llm { api, .. } => Endpoint::Llm(*api),
            Route::Models => Endpoint::Models,
            Route::Decide => Endpoint::Decide,
            Route::Reserve | Route::Commit(_) | Route::Release(_) => Endpoint::Reservations,
            Route::Delegate => Endpoint::Agents,
            Route::Cycles(_) => Endpoint::Cycles,
            Route::Mcp { .. } => Endpoint::Mcp,
        }
    }
}

/// Maps method and path (query stripped) to a route.
pub fn route(method: &str, path: &str) -> Result<Route, GateError> {
    if let Some(op) = crate::cycles::Op::parse(method, path) {
        return Ok(Route::Cycles(op));
    }
    let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
    let post = |r: Route| {
        if method == "POST" {
            Ok(r)
        } else {
            Err(GateError::MethodNotAllowed {
                method: method.to_string(),
            })
        }
    };
    let llm = |api| Route::Llm {
        api,
        deployment: None,
    };
    match path {
        "/v1/chat/completions" | "/chat/completions" => post(llm(Api::ChatCompletions)),
        "/v1/responses" | "/responses" => post(llm(Api::Responses)),
        "/v1/embeddings" | "/embeddings" => post(llm(Api::Embeddings)),
        "/v1/completions" | "/completions" => post(llm(Api::Completions)),
        "/v1/messages" => post(llm(Api::AnthropicMessages)),
        "/v1/models" | "/models" => {
            if method == "GET" {
                Ok(Route::Models)
            } else {
                Err(GateError::MethodNotAllowed {
                    method: method.to_string(),
                })
            }
        }
        "/v1/tollgate/decide" => post(Route::Decide),
        "/v1/tollgate/reservations" => post(Route::Reserve),
        "/v1/tollgate/agents" => post(Route::Delegate),
        // The MCP transport uses POST, GET and DELETE; its handler judges the method.
        "/mcp" => Ok(Route::Mcp { server: None }),
        _ => {
            if let Some(rest) = path.strip_prefix("/v1/tollgate/reservations/") {
                if let Some(id) = rest.strip_suffix("/commit") {
                    return post(Route::Commit(id.to_string()));
                }
                if let Some(id) = rest.strip_suffix("/release") {
                    return post(Route::Release(id.to_string()));
                }
            }
            if let Some(server) = path.strip_prefix("/mcp/")
                && !server.is_empty()
                && !server.contains('/')
            {
                return Ok(Route::Mcp {
                    server: Some(server.to_string()),
                });
            }
            if let Some(rest) = path.strip_prefix("/openai/deployments/")
                && let Some((deployment, op)) = rest.split_once('/')
            {
                let api = match op {
                    "chat/completions" => Api::ChatCompletions,
                    "embeddings" => Api::Embeddings,
                    "completions" => Api::Completions,
                    _ => {
                        return Err(GateError::NotFound {
                            path: path.to_string(),
                        });
                    }
                };
                return post(Route::Llm {
                    api,
                    deployment: Some(deployment.to_string()),
                });
            }
            Err(GateError::NotFound {
                path: path.to_string(),
            })
        }
    }
}

/// What the later stages need from a checked request body.
#[derive(Debug, Clone)]
pub struct Request {
    pub api: Api,
    pub model: String,
    pub stream: bool,
    pub body: Value,
}

fn field_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(field: &str, expected: &str, got: &Value) -> GateError {
    GateError::invalid(
        format!(
            "Invalid type for '{field}': expected {expected}, but got {}.",
            field_type(got)
        ),
        Some(field),
    )
}

fn expect(
    body: &Value,
    field: &str,
    ok: fn(&Value) -> bool,
    expected: &str,
) -> Result<(), GateError> {
    match body.get(field) {
        Some(v) if !v.is_null() && !ok(v) => Err(wrong(field, expected, v)),
        _ => Ok(()),
    }
}

fn required(body: &Value, field: &str) -> Result<(), GateError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(GateError::invalid(
            format!("Missing required parameter: '{field}'."),
            Some(field),
        )),
        _ => Ok(()),
    }
}

fn is_count(v: &Value) -> bool {
    v.as_u64().is_some()
}

fn is_text_or_list(v: &Value) -> bool {
    v.is_string() || v.is_array()
}

/// Parses and shape-checks a body for `api`.
pub fn parse(api: Api, deployment: Option<&str>, raw: &[u8]) -> Result<Request, GateError> {
    let mut body: Value = serde_json::from_slice(raw).map_err(|e| GateError::InvalidJson {
        message: format!(
            "We could not parse the JSON body of your request ({}). Send valid JSON.",
            describe_json_error(&e)
        ),
    })?;
    if !body.is_object() {
        return Err(GateError::InvalidJson {
            message: format!(
                "The request body must be a JSON object, not {}.",
                field_type(&body)
            ),
        });
    }
    if let (Some(d), None) = (deployment, body.get("model")) {
        body["model"] = Value::String(d.to_string());
    }
    required(&body, "model")?;
    let model = match &body["model"] {
        Value::String(m) => model_name(m)?.to_string(),
        other => return Err(wrong("model", "a string", other)),
    };
    expect(&body, "stream", Value::is_boolean, "a boolean")?;
    for f in [
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "n",
        "best_of",
    ] {
        expect(&body, f, is_count, "a non-negative integer")?;
    }
    expect(&body, "tools", Value::is_array, "an array")?;
    tool_names(api, &body)?;
    expect(&body, "stream_options", Value::is_object, "an object")?;
    match api {
        Api::ChatCompletions => {
            required(&body, "messages")?;
            expect(&body, "messages", Value::is_array, "an array")?;
            let messages = body["messages"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if messages.is_empty() {
                return Err(GateError::invalid(
                    "'messages' must contain at least one message.",
                    Some("messages"),
                ));
            }
            for (i, m) in messages.iter().enumerate() {
                let role = m.get("role");
                if !m.is_object() || !role.is_some_and(Value::is_string) {
                    return Err(GateError::invalid(
                        format!(
                            "Invalid message at 'messages[{i}]': expected an object with a string 'role'."
                        ),
                        Some(&format!("messages[{i}]")),
                    ));
                }
                content(&format!("messages[{i}].content"), m.get("content"))?;
            }
        }
        Api::AnthropicMessages => {
            required(&body, "messages")?;
            expect(&body, "messages", Value::is_array, "an array")?;
            required(&body, "max_tokens")?;
            for (i, m) in body["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                content(&format!("messages[{i}].content"), m.get("content"))?;
            }
        }
        Api::Responses => expect(&body, "input", is_text_or_list, "a string or an array")?,
        Api::Embeddings => {
            required(&body, "input")?;
            expect(&body, "input", is_text_or_list, "a string or an array")?;
        }
        Api::Completions => {
            required(&body, "prompt")?;
            expect(&body, "prompt", is_text_or_list, "a string or an array")?;
        }
    }
    let stream = api.streams() && body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok(Request {
        api,
        model,
        stream,
        body,
    })
}

/// Message content the guardrails and the estimator can read: a string, an array of part
/// objects, or absent/null (an assistant turn carrying only tool calls).
fn content(field: &str, v: Option<&Value>) -> Result<(), GateError> {
    match v {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            match parts
                .iter()
                .position(|p| !p.get("type").is_some_and(Value::is_string))
            {
                Some(j) => Err(GateError::invalid(
                    format!(
                        "Invalid content part at '{field}[{j}]': expected an object with a string 'type'."
                    ),
                    Some(&format!("{field}[{j}]")),
                )),
                None => Ok(()),
            }
        }
        Some(other) => Err(wrong(field, "a string or an array of content parts", other)),
    }
}

/// Every tool definition has the name its API requires: a nameless definition could not
/// be judged by the tool policy.
fn tool_names(api: Api, body: &Value) -> Result<(), GateError> {
    for (i, def) in body["tools"].as_array().into_iter().flatten().enumerate() {
        let kind = def.get("type").and_then(Value::as_str);
        let name = match (api, kind) {
            (Api::ChatCompletions, Some("custom")) => def.pointer("/custom/name"),
            (Api::ChatCompletions, _) => def.pointer("/function/name"),
            (Api::Responses, Some("function" | "custom")) => def.get("name"),
            // Hosted tools are named by their type; namespaces by their members.
            (Api::Responses, _) => continue,
            (_, _) => def.get("name"),
        };
        if !def.is_object() || name.is_none_or(|n| n.as_str().is_none_or(str::is_empty)) {
            return Err(GateError::invalid(
                format!(
                    "Invalid tool definition at 'tools[{i}]': it needs a non-empty string name."
                ),
                Some(&format!("tools[{i}]")),
            ));
        }
    }
    Ok(())
}

/// The longest model name accepted.
const MAX_MODEL_LEN: usize = 256;

/// A model name as providers spell them (`gpt-4o-2024-08-06`, `meta-llama/Llama-3-70b`,
/// `us.anthropic.claude-3-5-sonnet-20240620-v1:0`, `ft:gpt-4o-mini:org::id`): letters,
/// digits and `-._:@/+`, no empty, `.` or `..` path segment. Anything else could change
/// the meaning of a provider URL the name is put into (`?`, `#`, `%`, spaces), or be
/// judged by policy and priced as two different models.
pub fn model_name(m: &str) -> Result<&str, GateError> {
    let bad = |why: &str| Err(GateError::invalid(format!("'model' {why}."), Some("model")));
    if m.is_empty() {
        return bad("must not be empty");
    }
    if m.len() > MAX_MODEL_LEN {
        return bad(&format!("must be at most {MAX_MODEL_LEN} characters"));
    }
    if !m
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:@/+".contains(&b))
    {
        return bad("may contain only letters, digits and the characters - . _ : @ / +");
    }
    if m.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("must not contain an empty, `.` or `..` path segment");
    }
    Ok(m)
}

/// Describes a JSON error by position only: the message never echoes the body.
fn describe_json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "it ends unexpectedly",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Io => "read error",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("POST", "/v1/chat/completions").unwrap(),
            Route::Llm {
                api: Api::ChatCompletions,
                deployment: None
            }
        );
        assert_eq!(route("GET", "/v1/models").unwrap(), Route::Models);
        assert_eq!(
            route("POST", "/v1/tollgate/reservations/r1/commit").unwrap(),
            Route::Commit("r1".into())
        );
        assert_eq!(
            route(
                "POST",
                "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
            )
            .unwrap(),
            Route::Llm {
                api: Api::ChatCompletions,
                deployment: Some("gpt4o".into())
            }
        );
        assert_eq!(
            route("GET", "/v1/chat/completions").unwrap_err().status(),
            405
        );
        assert_eq!(route("POST", "/v2/whatever").unwrap_err().status(), 404);
    }

    #[test]
    fn bad_bodies_get_clear_errors() {
        let cases: &[(Api, &str, &str)] = &[
            (Api::ChatCompletions, "{not json", "invalid_json"),
            (Api::ChatCompletions, "[1,2]", "invalid_json"),
            (
                Api::ChatCompletions,
                r#"{"messages":[{"role":"user","content":"hi"}]}"#,
                "Missing required parameter: 'model'",
            ),
            (
                Api::ChatCompletions,
                r#"{"model":5,"messages":[]}"#,
                "Invalid type for 'model'",
            ),
            (
                Api::ChatCompletions,
                r#"{"model":"m","messages":"hi"}"#,
                "Invalid type for 'messages'",
            ),
            (
                Api::ChatCompletions,
                r#"{"model":"m","messages":[]}"#,
                "at least one message",
            ),
            (
                Api::ChatCompletions,
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                "messages[0]",
            ),
            (
                Api::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                "Invalid type for 'stream'",
            ),
            (
                Api::ChatCompletions,
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}"#,
                "Invalid type for 'max_tokens'",
            ),
            (
                Api::Embeddings,
                r#"{"model":"m"}"#,
                "Missing required parameter: 'input'",
            ),
            (
                Api::Completions,
                r#"{"model":"m","prompt":7}"#,
                "Invalid type for 'prompt'",
            ),
            (
                Api::AnthropicMessages,
                r#"{"model":"m","messages":[]}"#,
                "'max_tokens'",
            ),
        ];
        for (api, body, want) in cases {
            let e = parse(*api, None, body.as_bytes()).unwrap_err();
            let text = format!("{} {}", e.code(), e);
            assert!(text.contains(want), "{body}: wanted {want:?} in {text:?}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn json_errors_never_echo_the_body() {
        let e = parse(Api::ChatCompletions, None, b"{\"model\": \"sk-secret-value").unwrap_err();
        assert!(!e.to_string().contains("sk-secret"));
    }

    #[test]
    fn azure_paths_take_the_model_from_the_deployment() {
        let r = parse(
            Api::ChatCompletions,
            Some("gpt4o"),
            br#"{"messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(r.model, "gpt4o");
    }
}
