//! Server-sent events as the providers write them, and how they are cut into TCP writes so
//! that clients' (and tollgate's) incremental parsers are exercised.

use bytes::Bytes;
use serde_json::Value;

use super::rng::Rng;

/// The terminator OpenAI's Chat Completions and legacy Completions streams end with.
pub(crate) const DONE: &str = "data: [DONE]\n\n";

/// An unnamed event (OpenAI Chat Completions, Completions).
pub(crate) fn data(json: &Value) -> String {
    format!("data: {json}\n\n")
}

/// A named event (Responses, Anthropic Messages).
pub(crate) fn named(event: &str, json: &Value) -> String {
    format!("event: {event}\ndata: {json}\n\n")
}

/// Chance in percent that an event shares its write with the next one.
const MERGE_PERCENT: usize = 20;
/// Chance in percent that an event is split across two writes.
const SPLIT_PERCENT: usize = 20;

/// Groups events into writes: mostly one event per write, sometimes two in one, sometimes
/// one split at an arbitrary byte (inside a UTF-8 character too, as TCP may).
pub(crate) fn writes(events: &[String], rng: &mut Rng) -> Vec<Bytes> {
    let mut writes = Vec::with_capacity(events.len() + events.len() / 4);
    let mut index = 0;
    while index < events.len() {
        let event = events[index].as_bytes();
        let roll = rng.below(100);
        if roll < MERGE_PERCENT && index + 1 < events.len() {
            let mut merged = Vec::with_capacity(event.len() + events[index + 1].len());
            merged.extend_from_slice(event);
            merged.extend_from_slice(events[index + 1].as_bytes());
            writes.push(Bytes::from(merged));
            index += 2;
            continue;
        }
        if roll < MERGE_PERCENT + SPLIT_PERCENT && event.len() > 1 {
            let at = rng.between(1, event.len() - 1);
            writes.push(Bytes::copy_from_slice(&event[..at]));
            writes.push(Bytes::copy_from_slice(&event[at..]));
        } else {
            writes.push(Bytes::copy_from_slice(event));
        }
        index += 1;
    }
    writes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::rng::fnv1a;
    use proptest::prelude::{any, prop_assert_eq, proptest};
    use serde_json::json;

    #[test]
    fn event_framing() {
        assert_eq!(data(&json!({"a": 1})), "data: {\"a\":1}\n\n");
        assert_eq!(
            named("ping", &json!({"type": "ping"})),
            "event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }

    #[test]
    fn some_writes_merge_and_some_split() {
        let events: Vec<String> = (0..200).map(|i| data(&json!({"i": i}))).collect();
        let writes = writes(&events, &mut Rng::new(fnv1a(b"mix")));
        let ends_at_boundary = |w: &Bytes| w.ends_with(b"\n\n");
        assert!(writes.iter().any(|w| !ends_at_boundary(w)), "no split");
        assert!(
            writes
                .iter()
                .any(|w| w.windows(2).filter(|p| p == b"\n\n").count() > 1),
            "no merge"
        );
    }

    proptest! {
        #[test]
        fn writes_concatenate_to_the_events(
            texts in proptest::collection::vec(".{0,40}", 0..30),
            seed in any::<u64>(),
        ) {
            let events: Vec<String> = texts.iter().map(|t| data(&json!({"t": t}))).collect();
            let joined: Vec<u8> = writes(&events, &mut Rng::new(seed)).concat();
            prop_assert_eq!(joined, events.concat().into_bytes());
        }
    }
}
