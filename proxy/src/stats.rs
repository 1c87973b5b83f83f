//! Rolling per-agent statistics for `GET /admin/agents/{id}/stats`: volume, errors,
//! denials, latency and spend over the last hour and day.
//!
//! Kept in memory per instance, in two rings (60 one-minute slots, 24 one-hour slots), so
//! recording is a few additions under a lock and memory stays bounded per agent. With
//! several instances, each reports what it served.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

/// Latency histogram bounds in milliseconds (the last slot is everything above).
const LATENCY_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000,
];

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The minute or hour (since the epoch) this slot counts; stale slots are reset.
    at: i64,
    requests: u64,
    errors: u64,
    denials: u64,
    spend_nanos: i64,
    latency: [u64; LATENCY_MS.len() + 1],
}

impl Slot {
    fn add(&mut self, other: &Slot) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.denials += other.denials;
        self.spend_nanos += other.spend_nanos;
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a += b;
        }
    }
}

struct Ring<const N: usize> {
    slots: [Slot; N],
}

impl<const N: usize> Ring<N> {
    fn new() -> Self {
        Ring {
            slots: [Slot::default(); N],
        }
    }

    fn slot(&mut self, at: i64) -> &mut Slot {
        let slot = &mut self.slots[at.rem_euclid(N as i64) as usize];
        if slot.at != at {
            *slot = Slot {
                at,
                ..Slot::default()
            };
        }
        slot
    }

    /// The sum of the slots within the last `N` units before and including `now`.
    fn total(&self, now: i64) -> Slot {
        let mut sum = Slot::default();
        for s in self
            .slots
            .iter()
            .filter(|s| s.at > now - N as i64 && s.at <= now)
        {
            sum.add(s);
        }
        sum
    }
}

struct Agent {
    minutes: Ring<60>,
    hours: Ring<24>,
}

/// One finished request, as the stats count it.
pub struct Sample {
    pub now_secs: i64,
    pub status: u16,
    pub denied: bool,
    pub latency_ms: u64,
    pub spend_nanos: i64,
}

#[derive(Default)]
pub struct AgentStats {
    agents: Mutex<HashMap<String, Agent>>,
}

impl AgentStats {
    pub fn record(&self, agent: &str, s: &Sample) {
        let mut one = Slot {
            requests: 1,
            errors: u64::from(s.status >= 500),
            denials: u64::from(s.denied),
            spend_nanos: s.spend_nanos,
            ..Slot::default()
        };
        let bucket = LATENCY_MS
            .iter()
            .position(|b| s.latency_ms <= *b)
            .unwrap_or(LATENCY_MS.len());
        one.latency[bucket] = 1;
        let mut agents = self.agents.lock().expect("agent stats");
        let a = agents.entry(agent.to_string()).or_insert_with(|| Agent {
            minutes: Ring::new(),
            hours: Ring::new(),
        });
        a.minutes.slot(s.now_secs.div_euclid(60)).add(&one);
        a.hours.slot(s.now_secs.div_euclid(3600)).add(&one);
    }

    /// The last hour and the last day; `None` for an agent never seen.
    pub fn summary(&self, agent: &str, now_secs: i64) -> Option<Value> {
        let agents = self.agents.lock().expect("agent stats");
        let a = agents.get(agent)?;
        Some(json!({
            "1h": describe(&a.minutes.total(now_secs.div_euclid(60))),
            "24h": describe(&a.hours.total(now_secs.div_euclid(3600))),
        }))
    }

    /// What `summary` says of an agent with no requests yet.
    pub fn idle() -> Value {
        json!({ "1h": describe(&Slot::default()), "24h": describe(&Slot::default()) })
    }
}

/// The smallest histogram bound at or above quantile `q` (an upper bound on it).
fn quantile_ms(s: &Slot, q: f64) -> Option<u64> {
    let total: u64 = s.latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in s.latency.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(LATENCY_MS.get(i).copied().unwrap_or(u64::MAX));
        }
    }
    None
}

fn describe(s: &Slot) -> Value {
    json!({
        "requests": s.requests,
        "errors": s.errors,
        "error_rate": if s.requests == 0 { 0.0 } else { s.errors as f64 / s.requests as f64 },
        "denials": s.denials,
        "latency_p50_ms_at_most": quantile_ms(s, 0.5),
        "latency_p99_ms_at_most": quantile_ms(s, 0.99),
        "spend_usd": tollgate_config::units::format_usd(s.spend_nanos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(now_secs: i64, status: u16, latency_ms: u64) -> Sample {
        Sample {
            now_secs,
            status,
            denied: status == 429,
            latency_ms,
            spend_nanos: 1_000,
        }
    }

    #[test]
    fn windows_roll_and_count() {
        let stats = AgentStats::default();
        let t0 = 1_800_000_000;
        stats.record("a", &sample(t0, 200, 30));
        stats.record("a", &sample(t0 + 10, 502, 3000));
        stats.record("a", &sample(t0 + 20, 429, 1));
        let s = stats.summary("a", t0 + 30).unwrap();
        assert_eq!(s["1h"]["requests"], 3);
        assert_eq!(s["1h"]["errors"], 1);
        assert_eq!(s["1h"]["denials"], 1);
        assert_eq!(s["1h"]["spend_usd"], "0.000003");
        assert_eq!(s["1h"]["latency_p50_ms_at_most"], 50);
        assert_eq!(s["1h"]["latency_p99_ms_at_most"], 5000);
        // Two hours later the hour window is empty, the day still counts them.
        let later = stats.summary("a", t0 + 7200).unwrap();
        assert_eq!(later["1h"]["requests"], 0);
        assert_eq!(later["24h"]["requests"], 3);
        // A day and more later, nothing.
        assert_eq!(
            stats.summary("a", t0 + 90_000).unwrap()["24h"]["requests"],
            0
        );
        assert!(stats.summary("nobody", t0).is_none());
    }
}
