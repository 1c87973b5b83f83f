//! Tests of the fields an adversarial review found unscanned: where a redacted value
//! could still leave (log probabilities, audio, reasoning) and where a prompt could hide
//! one from the input guard (definitions, schemas, predictions, names, variables,
//! documents, token ids).

use serde_json::{Value, json};

use super::{Api, apply_request, apply_response, asks_for_audio, strip_unscannable, token_ids};
use crate::{Action, Guard, GuardConfig};

fn redact() -> Guard {
    Guard::new(&GuardConfig::all(Action::Redact)).unwrap()
}

const EMAIL: &str = "dana.whitfield@example.org";
const AWS: &str = "AKIAZ7VQ3NXK4LR2PW6M";

/// Whether any string in `v`, or any byte array spelling text, still carries `needle`.
fn carries(v: &Value, needle: &str) -> bool {
    let s = v.to_string();
    if s.contains(needle) {
        return true;
    }
    // `bytes` arrays in logprobs spell tokens as UTF-8 byte values.
    let mut bytes = Vec::new();
    collect_bytes(v, &mut bytes);
    String::from_utf8_lossy(&bytes).contains(needle)
}

fn collect_bytes(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(b)) = m.get("bytes") {
                out.extend(b.iter().filter_map(Value::as_u64).map(|x| x as u8));
            }
            m.values().for_each(|c| collect_bytes(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| collect_bytes(c, out)),
        _ => {}
    }
}

fn token(t: &str) -> Value {
    json!({"token": t, "logprob": -0.1, "bytes": t.as_bytes(),
           "top_logprobs": [{"token": t, "logprob": -0.1, "bytes": t.as_bytes()}]})
}

#[test]
fn chat_logprobs_are_stripped_when_the_output_guard_is_on() {
    let text = format!("mail {EMAIL}");
    let lp = json!({"content": [token("mail "), token(EMAIL)], "refusal": null});
    let mut whole = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": lp}]});
    let o = apply_response(Api::ChatCompletions, &mut whole, &redact(), &Guard::off());
    assert!(o.changed);
    assert_eq!(whole["choices"][0]["logprobs"], Value::Null);
    assert!(!carries(&whole, EMAIL), "{whole}");

    let mut chunk =
        json!({"choices": [{"index": 0, "delta": {"content": "mail "}, "logprobs": lp}]});
    assert!(strip_unscannable(Api::ChatCompletions, &mut chunk));
    assert!(!carries(&chunk, EMAIL));

    // With the output guard off nothing is hidden, so nothing is stripped.
    let mut kept = json!({"choices": [{"index": 0, "message": {"content": "x"}, "logprobs": lp}]});
    let o = apply_response(
        Api::ChatCompletions,
        &mut kept,
        &Guard::off(),
        &Guard::off(),
    );
    assert!(!o.changed);
    assert!(kept["choices"][0]["logprobs"].is_object());
}

#[test]
fn legacy_completion_logprobs_are_stripped() {
    let mut body = json!({"choices": [{"index": 0, "text": format!("key {AWS}"), "logprobs": {
        "tokens": ["key ", AWS], "token_logprobs": [-0.1, -0.2],
        "top_logprobs": [{"key ": -0.1}, {AWS: -0.2}], "text_offset": [0, 4]}}]});
    apply_response(Api::Completions, &mut body, &redact(), &Guard::off());
    assert_eq!(
        body["choices"][0]["text"],
        "key [REDACTED:AWS_ACCESS_KEY_ID]"
    );
    assert!(!carries(&body, AWS), "{body}");
}

#[test]
fn responses_logprobs_are_stripped_from_answers_and_events() {
    let part = json!({"type": "output_text", "text": format!("mail {EMAIL}"), "annotations": [],
                      "logprobs": [token("mail "), token(EMAIL)]});
    let item = json!({"type": "message", "role": "assistant", "content": [part]});
    let shapes = [
        json!({"object": "response", "output": [item]}),
        json!({"type": "response.completed", "response": {"output": [item]}}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
        json!({"type": "response.content_part.done", "output_index": 0, "content_index": 0, "part": part}),
        json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0,
               "text": format!("mail {EMAIL}"), "logprobs": [token(EMAIL)]}),
    ];
    for mut body in shapes {
        apply_response(Api::Responses, &mut body, &redact(), &Guard::off());
        assert!(!carries(&body, EMAIL), "{body}");
    }
    let mut delta =
        json!({"type": "response.output_text.delta", "delta": "mail ", "logprobs": [token(EMAIL)]});
    assert!(strip_unscannable(Api::Responses, &mut delta));
    assert_eq!(delta["logprobs"], json!([]));
    // The empty arrays OpenAI sends are left alone: the event need not be rewritten.
    assert!(!strip_unscannable(Api::Responses, &mut delta));
}

#[test]
fn audio_transcripts_are_scanned_and_audio_dropped() {
    let mut body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
        "audio": {"id": "audio_1", "data": "UklGRg==", "expires_at": 1, "transcript": format!("write to {EMAIL}")}}}]});
    apply_response(Api::ChatCompletions, &mut body, &redact(), &Guard::off());
    let audio = &body["choices"][0]["message"]["audio"];
    assert_eq!(audio["transcript"], "write to [REDACTED:EMAIL]");
    assert!(audio.get("data").is_none(), "{audio}");
    assert_eq!(audio["id"], "audio_1");
}

#[test]
fn reasoning_texts_are_scanned() {
    let mut chat = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok",
        "reasoning_content": format!("the key is {AWS}"), "reasoning": format!("mail {EMAIL}")}}]});
    apply_response(Api::ChatCompletions, &mut chat, &redact(), &Guard::off());
    assert!(!carries(&chat, AWS) && !carries(&chat, EMAIL), "{chat}");

    let mut resp = json!({"output": [{"type": "reasoning", "summary": [],
        "content": [{"type": "reasoning_text", "text": format!("the key is {AWS}")}]}]});
    apply_response(Api::Responses, &mut resp, &redact(), &Guard::off());
    assert!(!carries(&resp, AWS), "{resp}");

    let mut delta = json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "thinking_delta", "thinking": format!("the key is {AWS}")}});
    apply_response(Api::AnthropicMessages, &mut delta, &redact(), &Guard::off());
    assert!(!carries(&delta, AWS), "{delta}");

    let mut cited = json!({"content": [{"type": "text", "text": "see",
        "citations": [{"type": "char_location", "cited_text": format!("mail {EMAIL}")}]}]});
    apply_response(Api::AnthropicMessages, &mut cited, &redact(), &Guard::off());
    assert!(!carries(&cited, EMAIL), "{cited}");
}

#[test]
fn chat_definitions_schemas_predictions_and_names_are_scanned() {
    let g = redact();
    let mut body = json!({
        "messages": [{"role": "user", "name": AWS, "content": "hi"}],
        "tools": [
            {"type": "function", "function": {"name": "lookup",
                "description": format!("ask {EMAIL}"),
                "parameters": {"type": "object", "properties": {
                    "who": {"type": "string", "description": format!("key {AWS}"),
                            "enum": ["x", EMAIL]},
                    "description": {"type": "string", "default": EMAIL}
                }, "required": ["who"]}}},
            {"type": "custom", "custom": {"name": "raw", "description": format!("key {AWS}")}}
        ],
        "functions": [{"name": "old", "description": format!("mail {EMAIL}")}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "out",
            "schema": {"type": "object", "properties": {"a": {"const": AWS}}}}},
        "prediction": {"type": "content", "content": format!("mail {EMAIL}")}
    });
    let o = apply_request(Api::ChatCompletions, &mut body, &g, &g);
    assert!(o.changed);
    assert!(!carries(&body, AWS) && !carries(&body, EMAIL), "{body:#}");
    // Structure is left alone: types, property names, required lists, tool names.
    let params = &body["tools"][0]["function"]["parameters"];
    assert_eq!(params["required"], json!(["who"]));
    assert_eq!(params["properties"]["who"]["type"], "string");
    assert_eq!(body["tools"][0]["function"]["name"], "lookup");
}

#[test]
fn responses_definitions_and_prompt_variables_are_scanned() {
    let g = redact();
    let mut body = json!({
        "input": "hi",
        "instructions": format!("owner {EMAIL}"),
        "tools": [{"type": "function", "name": "f", "description": format!("key {AWS}"),
                   "parameters": {"type": "object", "properties": {"q": {"description": EMAIL}}}}],
        "text": {"format": {"type": "json_schema", "name": "o", "description": format!("mail {EMAIL}"),
                            "schema": {"enum": [AWS]}}},
        "prompt": {"id": "pmpt_1", "variables": {"who": EMAIL,
                   "doc": {"type": "input_text", "text": format!("key {AWS}")}}}
    });
    apply_request(Api::Responses, &mut body, &g, &g);
    assert!(!carries(&body, AWS) && !carries(&body, EMAIL), "{body:#}");
    assert_eq!(body["prompt"]["id"], "pmpt_1");
}

#[test]
fn anthropic_documents_search_results_and_tools_are_scanned() {
    let g = redact();
    let mut body = json!({
        "tools": [{"name": "t", "description": format!("mail {EMAIL}"),
                   "input_schema": {"type": "object", "properties": {"k": {"description": AWS}}}}],
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": format!("key {AWS}")},
             "title": format!("from {EMAIL}"), "context": "ctx"},
            {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": format!("mail {EMAIL}")}]}},
            {"type": "search_result", "source": "https://example.com/a", "title": "t",
             "content": [{"type": "text", "text": format!("key {AWS}")}]},
            {"type": "tool_result", "tool_use_id": "x", "content": [
                {"type": "search_result", "source": "s", "title": format!("{EMAIL}"), "content": []}]}
        ]}]
    });
    apply_request(Api::AnthropicMessages, &mut body, &g, &g);
    assert!(!carries(&body, AWS) && !carries(&body, EMAIL), "{body:#}");
    assert_eq!(
        body["messages"][0]["content"][0]["source"]["media_type"],
        "text/plain"
    );
}

#[test]
fn token_id_prompts_and_audio_output_are_recognised() {
    let yes = [
        (Api::Completions, json!({"prompt": [1, 2, 3]})),
        (Api::Completions, json!({"prompt": [[1, 2], [3]]})),
        (Api::Embeddings, json!({"input": [101, 2023]})),
        (Api::Embeddings, json!({"input": [[101], [2023]]})),
    ];
    for (api, body) in yes {
        assert!(token_ids(api, &body).is_some(), "{body}");
    }
    let no = [
        (Api::Completions, json!({"prompt": "text"})),
        (Api::Completions, json!({"prompt": ["a", "b"]})),
        (Api::Embeddings, json!({"input": "text"})),
        (Api::ChatCompletions, json!({"prompt": [1]})),
    ];
    for (api, body) in no {
        assert!(token_ids(api, &body).is_none(), "{body}");
    }
    let chat = Api::ChatCompletions;
    assert!(asks_for_audio(
        chat,
        &json!({"modalities": ["text", "audio"]})
    ));
    assert!(asks_for_audio(
        chat,
        &json!({"audio": {"voice": "alloy", "format": "wav"}})
    ));
    assert!(!asks_for_audio(chat, &json!({"modalities": ["text"]})));
    assert!(!asks_for_audio(
        Api::Responses,
        &json!({"modalities": ["audio"]})
    ));
}
