//! Guardrails on MCP values: every string of a tool's arguments or of a server's result,
//! scanned one by one, redacted in place; findings counted by type, never kept.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use tollgate_config::{GuardDirection, McpConnection, Policy};
use tollgate_guardrails::{CustomRule, FindingCount, Guard, GuardConfig, GuardError};
use tollgate_types::Action;

/// A connection's compiled guards.
#[derive(Debug)]
pub struct Guards {
    pub args: Guard,
    pub results: Guard,
}

/// The verdict on one value.
#[derive(Debug, Default)]
pub struct Scan {
    pub blocked: bool,
    pub changed: bool,
    pub summary: Vec<FindingCount>,
}

impl Scan {
    /// The distinct finding types that blocked, for the one-line reason.
    pub fn blocked_kinds(&self) -> String {
        let mut v: Vec<&str> = self
            .summary
            .iter()
            .filter(|c| c.action == Action::Block)
            .map(|c| c.kind.as_str())
            .collect();
        v.sort_unstable();
        v.dedup();
        v.join(", ")
    }
}

type Cache = Mutex<(u64, BTreeMap<(String, String), Arc<Guards>>)>;

/// The guards of `policy` × `server`, compiled once per config generation: compiling
/// detectors per call would cost more than the scan.
pub fn of(
    generation: u64,
    policy: &Policy,
    conn: &McpConnection,
) -> Result<Arc<Guards>, GuardError> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new((0, BTreeMap::new())));
    let key = (policy.name.clone(), conn.server.clone());
    {
        let c = cache.lock().expect("mcp guards");
        if c.0 == generation
            && let Some(g) = c.1.get(&key)
        {
            return Ok(g.clone());
        }
    }
    let custom: Vec<CustomRule> = policy
        .guardrails
        .custom
        .iter()
        .map(|r| CustomRule {
            name: r.name.clone(),
            pattern: r.pattern.clone(),
            words: r.words.clone(),
            action: r.action,
        })
        .collect();
    let guard = |d: &GuardDirection| {
        Guard::new(&GuardConfig {
            pii: d.pii,
            secrets: d.secrets,
            custom: custom.clone(),
        })
    };
    let compiled = Arc::new(Guards {
        args: guard(&conn.tool_args)?,
        results: guard(&conn.tool_results)?,
    });
    let mut c = cache.lock().expect("mcp guards");
    if c.0 != generation {
        // A reload: the old generation's guards are never asked for again.
        *c = (generation, BTreeMap::new());
    }
    c.1.insert(key, compiled.clone());
    Ok(compiled)
}

/// Scans every string in `value` (object values and array items, not keys), redacting in
/// place where the guard says so.
pub fn scan(guard: &Guard, value: &mut Value) -> Scan {
    let mut out = Scan::default();
    if guard.is_off() {
        return out;
    }
    let mut tally: BTreeMap<(String, Action), FindingCount> = BTreeMap::new();
    walk(guard, value, &mut out, &mut tally);
    out.summary = tally.into_values().collect();
    out
}

fn walk(
    guard: &Guard,
    value: &mut Value,
    out: &mut Scan,
    tally: &mut BTreeMap<(String, Action), FindingCount>,
) {
    match value {
        Value::String(s) => {
            let o = guard.apply(s);
            out.blocked |= o.blocked;
            for c in o.summary {
                tally
                    .entry((c.kind.as_str().to_string(), c.action))
                    .and_modify(|e| e.count = e.count.saturating_add(c.count))
                    .or_insert(c);
            }
            if let Some(r) = o.redacted {
                *s = r;
                out.changed = true;
            }
        }
        Value::Array(items) => {
            for v in items {
                walk(guard, v, out, tally);
            }
        }
        Value::Object(map) => {
            for v in map.values_mut() {
                walk(guard, v, out, tally);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_strings_are_redacted_and_counted() {
        let g = Guard::new(&GuardConfig::all(Action::Redact)).unwrap();
        let key = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
        let mut v = json!({"content": [{"type": "text", "text": format!("token {key}")}],
                           "structuredContent": {"deep": [format!("{key}")]}});
        let s = scan(&g, &mut v);
        assert!(s.changed && !s.blocked);
        assert!(!v.to_string().contains(key));
        assert_eq!(s.summary.iter().map(|c| c.count).sum::<u32>(), 2);
    }

    #[test]
    fn a_blocking_finding_blocks() {
        let g = Guard::new(&GuardConfig::all(Action::Block)).unwrap();
        let mut v = json!({"path": "ghp_0123456789abcdefghijABCDEFGHIJ012345"});
        let s = scan(&g, &mut v);
        assert!(s.blocked);
        assert!(!s.blocked_kinds().is_empty());
    }
}
