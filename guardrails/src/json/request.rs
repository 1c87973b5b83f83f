//! The parts of a request the model reads besides its messages: tool definitions and
//! their schemas, structured-output schemas, predicted output, stored-prompt variables;
//! and the request shapes no guard can read.

use serde_json::Value;

use super::{Api, Walker};

/// The field holding a prompt given as token ids (legacy completions `prompt`,
/// embeddings `input`: an array of integers or of integer arrays), if any. No text
/// guard can read token ids, so a request with an input guard on is refused.
pub fn token_ids(api: Api, body: &Value) -> Option<&'static str> {
    let field = match api {
        Api::Completions => "prompt",
        Api::Embeddings => "input",
        _ => return None,
    };
    let tokens =
        |v: &Value| v.is_number() || v.as_array().is_some_and(|a| a.iter().any(Value::is_number));
    match body.get(field) {
        Some(Value::Array(items)) if items.iter().any(tokens) => Some(field),
        _ => None,
    }
}

/// Whether a chat request asks for generated audio (`modalities` with `audio`, or an
/// `audio` output setting). Speech says what its transcript says, and no output guard
/// can redact it, so a request with an output guard on is refused.
pub fn asks_for_audio(api: Api, body: &Value) -> bool {
    if api != Api::ChatCompletions {
        return false;
    }
    let modalities = body
        .get("modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|x| x == "audio"));
    modalities || body.get("audio").is_some_and(Value::is_object)
}

impl Walker<'_> {
    /// Chat: tool and function definitions, `response_format`'s schema, `prediction`.
    pub(super) fn chat_request_extras(&mut self, body: &mut Value) {
        self.definitions(body.get_mut("tools"), Some(&["function", "custom"]));
        self.definitions(body.get_mut("functions"), None);
        if let Some(s) = body.pointer_mut("/response_format/json_schema") {
            self.definition(s);
        }
        if let Some(p) = body.get_mut("prediction") {
            self.parts(p.get_mut("content"));
        }
    }

    /// Responses: tool definitions, the output format's schema, stored-prompt variables.
    pub(super) fn responses_request_extras(&mut self, body: &mut Value) {
        self.definitions(body.get_mut("tools"), None);
        if let Some(f) = body.pointer_mut("/text/format") {
            self.definition(f);
        }
        if let Some(Value::Object(vars)) = body.pointer_mut("/prompt/variables") {
            for v in vars.values_mut() {
                if v.is_string() {
                    self.text(Some(v));
                } else {
                    self.text(v.get_mut("text"));
                }
            }
        }
    }

    /// A list of tool definitions; with `nested`, each definition sits under one of
    /// these keys (chat's `{"type": "function", "function": {...}}`).
    pub(super) fn definitions(&mut self, v: Option<&mut Value>, nested: Option<&[&str]>) {
        let Some(Value::Array(tools)) = v else { return };
        for t in tools {
            match nested {
                Some(keys) => {
                    for k in keys {
                        if let Some(d) = t.get_mut(*k) {
                            self.definition(d);
                        }
                    }
                }
                None => self.definition(t),
            }
        }
    }

    /// One tool definition or named schema: its descriptions, its parameter schema, a
    /// custom tool's grammar.
    fn definition(&mut self, d: &mut Value) {
        self.text(d.get_mut("description"));
        self.text(d.get_mut("server_description"));
        for key in ["parameters", "input_schema", "schema"] {
            if let Some(s) = d.get_mut(key) {
                self.schema(s);
            }
        }
        if let Some(f) = d.get_mut("format") {
            self.text(f.get_mut("definition"));
            if let Some(g) = f.get_mut("grammar") {
                self.text(g.get_mut("definition"));
            }
        }
    }

    /// A JSON schema: the texts it shows the model (`description`, `title`) and the
    /// values it spells out (`enum`, `const`, `default`, `examples`), at every depth.
    /// Keywords, types and property names are structure, not text.
    fn schema(&mut self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    match k.as_str() {
                        "description" | "title" => self.text(Some(child)),
                        "enum" | "const" | "default" | "examples" => self.strings_deep(child),
                        "properties" | "patternProperties" | "$defs" | "definitions" => {
                            if let Value::Object(props) = child {
                                props.values_mut().for_each(|p| self.schema(p));
                            }
                        }
                        _ if child.is_object() || child.is_array() => self.schema(child),
                        _ => {}
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.schema(i)),
            _ => {}
        }
    }

    /// Every string inside a value, as text.
    fn strings_deep(&mut self, v: &mut Value) {
        match v {
            Value::String(_) => self.text(Some(v)),
            Value::Array(items) => items.iter_mut().for_each(|i| self.strings_deep(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.strings_deep(i)),
            _ => {}
        }
    }
}
