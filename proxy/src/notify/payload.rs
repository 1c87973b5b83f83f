//! What an approval webhook carries: the event (tollgate's JSON), its Slack rendering, the
//! shape of the arguments (types, never values) and the HMAC signature.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tollgate_budget::{ApprovalRecord, ApprovalStatus};

/// What happened to an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Requested,
    Approved,
    Denied,
    Expired,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Requested => "approval.requested",
            Event::Approved => "approval.approved",
            Event::Denied => "approval.denied",
            Event::Expired => "approval.expired",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Event::Requested => "requested",
            Event::Approved => "approved",
            Event::Denied => "denied",
            Event::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Event> {
        [
            Event::Requested,
            Event::Approved,
            Event::Denied,
            Event::Expired,
        ]
        .into_iter()
        .find(|e| e.as_str() == text)
    }

    /// The events a record has given rise to so far: requested, then its decision, or its
    /// lapse when nobody decided.
    pub fn of(rec: &ApprovalRecord, now: DateTime<Utc>) -> Vec<Event> {
        let mut out = vec![Event::Requested];
        match rec.status {
            ApprovalStatus::Approved => out.push(Event::Approved),
            ApprovalStatus::Denied => out.push(Event::Denied),
            ApprovalStatus::Pending if now >= rec.expires_at => out.push(Event::Expired),
            ApprovalStatus::Expired if rec.decided_at.is_none() => out.push(Event::Expired),
            _ => {}
        }
        out
    }

    /// The event's id: the same event derived twice has the same id, which is what keeps
    /// it from being queued or delivered twice.
    pub fn id(self, approval: &str) -> String {
        format!("{approval}.{}", self.short())
    }
}

/// Types of a JSON value, not the value: `{"to": "string", "cc": ["string"]}`. Bounded in
/// depth and width: it describes, it does not reproduce.
pub fn shape(v: &Value) -> Value {
    shape_at(v, 0)
}

fn shape_at(v: &Value, depth: usize) -> Value {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "boolean".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) if depth < 4 => match items.first() {
            Some(first) => Value::Array(vec![shape_at(first, depth + 1)]),
            None => Value::Array(Vec::new()),
        },
        Value::Array(_) => "array".into(),
        Value::Object(map) if depth < 4 => {
            let mut out = Map::new();
            for (k, v) in map.iter().take(32) {
                let key: String = k.chars().take(64).collect();
                out.insert(key, shape_at(v, depth + 1));
            }
            Value::Object(out)
        }
        Value::Object(_) => "object".into(),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The event as queued: everything a delivery needs, nothing secret. The arguments are
/// described by their shape only.
pub fn event(event: Event, rec: &ApprovalRecord) -> Value {
    let args = serde_json::from_str::<Value>(&rec.arguments)
        .map(|v| shape(&v))
        .unwrap_or(Value::String("unparsed".into()));
    json!({
        "event_id": event.id(&rec.id),
        "type": event.as_str(),
        "approval": {
            "id": rec.id,
            "agent": rec.agent,
            "tool": rec.tool,
            "arguments_shape": args,
            "request_id": rec.request_id,
            "status": match event {
                Event::Requested => "pending",
                Event::Approved => "approved",
                Event::Denied => "denied",
                Event::Expired => "expired",
            },
            "created_at": rfc3339(rec.created_at),
            "expires_at": rfc3339(rec.expires_at),
            "decided_at": rec.decided_at.map(rfc3339),
        },
        "commands": {
            "approve": format!("tollgate approvals approve {}", rec.id),
            "deny": format!("tollgate approvals deny {}", rec.id),
        },
    })
}

/// The JSON body sent with `format: json`: the event, stamped with when it is sent (the
/// stamp is inside the signed body, so it cannot be changed to replay an old delivery).
pub fn json_body(event: &Value, sent_at: i64) -> Vec<u8> {
    let mut v = event.clone();
    v["sent_at"] = sent_at.into();
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Slack's escaping for text: `&`, `<` and `>` are control characters in mrkdwn.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body sent with `format: slack`: an incoming-webhook message with `text` (the
/// notification and fallback) and `blocks`.
pub fn slack_body(event: &Value) -> Vec<u8> {
    let a = &event["approval"];
    let s = |v: &Value| esc(v.as_str().unwrap_or_default());
    let (id, agent, tool) = (s(&a["id"]), s(&a["agent"]), s(&a["tool"]));
    let args = esc(&a["arguments_shape"].to_string());
    let headline = match Event::parse(event["type"].as_str().unwrap_or_default()) {
        Some(Event::Requested) => {
            format!("Approval requested: agent `{agent}` wants to call `{tool}`")
        }
        Some(Event::Approved) => format!("Approved: `{tool}` for agent `{agent}`"),
        Some(Event::Denied) => format!("Denied: `{tool}` for agent `{agent}`"),
        Some(Event::Expired) | None => {
            format!("Expired without a decision: `{tool}` for agent `{agent}`")
        }
    };
    let mut lines = vec![
        format!("*{headline}*"),
        format!("Approval `{id}` · arguments (types only): `{args}`"),
    ];
    if event["type"] == Event::Requested.as_str() {
        lines.push(format!(
            "Approve: `tollgate approvals approve {id}`\nDeny: `tollgate approvals deny {id}`\nExpires {}",
            s(&a["expires_at"])
        ));
    }
    let text = lines.join("\n");
    serde_json::to_vec(&json!({
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    }))
    .unwrap_or_default()
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> ApprovalRecord {
        ApprovalRecord {
            id: "apr_1".into(),
            agent: "a<1>".into(),
            tool: "send_email".into(),
            args_sha256: [0; 32],
            arguments: r#"{"to":"bob@acme.com","n":3,"cc":["x@y.z"],"deep":{"k":null}}"#.into(),
            request_id: "req_1".into(),
            status: ApprovalStatus::Pending,
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            expires_at: DateTime::from_timestamp(1_700_000_600, 0).unwrap(),
            decided_at: None,
        }
    }

    #[test]
    fn the_event_carries_the_shape_of_the_arguments_never_their_values() {
        let e = event(Event::Requested, &rec());
        assert_eq!(
            e["approval"]["arguments_shape"],
            json!({"to": "string", "n": "number", "cc": ["string"], "deep": {"k": "null"}})
        );
        let text = e.to_string() + &String::from_utf8(slack_body(&e)).unwrap();
        assert!(
            !text.contains("bob@acme.com") && !text.contains("x@y.z"),
            "{text}"
        );
        assert_eq!(e["event_id"], "apr_1.requested");
    }

    #[test]
    fn slack_text_names_tool_agent_and_commands_escaped() {
        let body: Value =
            serde_json::from_slice(&slack_body(&event(Event::Requested, &rec()))).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("`send_email`"), "{text}");
        assert!(text.contains("a&lt;1&gt;"), "{text}");
        assert!(text.contains("tollgate approvals approve apr_1"), "{text}");
        assert!(text.contains("tollgate approvals deny apr_1"), "{text}");
        assert_eq!(body["blocks"][0]["text"]["text"], text);
    }

    #[test]
    fn events_follow_the_record() {
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let mut r = rec();
        assert_eq!(Event::of(&r, now), vec![Event::Requested]);
        let later = DateTime::from_timestamp(1_700_000_700, 0).unwrap();
        assert_eq!(Event::of(&r, later), vec![Event::Requested, Event::Expired]);
        r.status = ApprovalStatus::Approved;
        r.decided_at = Some(now);
        assert_eq!(
            Event::of(&r, later),
            vec![Event::Requested, Event::Approved]
        );
    }

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
