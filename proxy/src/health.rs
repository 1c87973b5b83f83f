//! Provider health: a provider that fails `eject_after` times in a row (it cannot be
//! reached, says nothing within the first-byte timeout, or answers 5xx) is ejected for
//! `cool_down`, and skipped meanwhile by every chain that has another provider left.
//!
//! Without it a provider that accepts connections and never answers costs every request
//! the whole first-byte timeout before the fallback is tried. After the cool-down the
//! provider is tried again; one more failure ejects it again, one answer restores it.
//! Keyed by configured provider names only, so the map stays as small as the config.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tollgate_config::Fallback;

#[derive(Debug, Default)]
struct Record {
    /// Failures since the last answer.
    failures: u32,
    ejected_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Health {
    providers: Mutex<HashMap<String, Record>>,
}

impl Health {
    /// Whether `provider` is ejected now.
    pub fn is_ejected(&self, provider: &str) -> bool {
        self.is_ejected_at(provider, Instant::now())
    }

    fn is_ejected_at(&self, provider: &str, now: Instant) -> bool {
        let map = self.providers.lock().expect("provider health");
        map.get(provider)
            .and_then(|r| r.ejected_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a failure of `provider`; `true` when this failure ejects it.
    pub fn failed(&self, provider: &str, policy: &Fallback) -> bool {
        self.failed_at(provider, policy, Instant::now())
    }

    fn failed_at(&self, provider: &str, policy: &Fallback, now: Instant) -> bool {
        let mut map = self.providers.lock().expect("provider health");
        let record = map.entry(provider.to_string()).or_default();
        record.failures = record.failures.saturating_add(1);
        let ejected = record.ejected_until.is_some_and(|until| now < until);
        if policy.eject_after == 0 || ejected || record.failures < policy.eject_after {
            return false;
        }
        record.ejected_until = Some(now + policy.cool_down);
        true
    }

    /// `provider` answered: its failures are forgotten and an ejection ends. `true` when it
    /// was ejected.
    pub fn answered(&self, provider: &str) -> bool {
        let mut map = self.providers.lock().expect("provider health");
        map.remove(provider)
            .is_some_and(|r| r.ejected_until.is_some())
    }

    /// Providers ejected now, and forgets providers `keep` no longer names.
    pub fn ejected(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let now = Instant::now();
        let mut map = self.providers.lock().expect("provider health");
        map.retain(|name, _| keep(name));
        map.iter()
            .filter(|(_, r)| r.ejected_until.is_some_and(|until| now < until))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(eject_after: u32) -> Fallback {
        Fallback {
            eject_after,
            cool_down: Duration::from_secs(30),
            ..Fallback::default()
        }
    }

    #[test]
    fn consecutive_failures_eject_until_the_cool_down_ends() {
        let h = Health::default();
        let t0 = Instant::now();
        let p = policy(2);
        assert!(!h.failed_at("a", &p, t0));
        assert!(!h.is_ejected_at("a", t0));
        assert!(h.failed_at("a", &p, t0), "the second failure ejects");
        assert!(h.is_ejected_at("a", t0 + Duration::from_secs(29)));
        assert!(!h.is_ejected_at("b", t0), "only the provider that failed");
        // Requests already in flight fail too: they neither extend nor repeat the ejection.
        assert!(!h.failed_at("a", &p, t0 + Duration::from_secs(10)));
        assert!(!h.is_ejected_at("a", t0 + Duration::from_secs(30)));
        // Half open after the cool-down: one more failure ejects again.
        assert!(h.failed_at("a", &p, t0 + Duration::from_secs(31)));
        assert!(h.is_ejected_at("a", t0 + Duration::from_secs(32)));
    }

    #[test]
    fn an_answer_restores_and_eject_after_zero_never_ejects() {
        let h = Health::default();
        let t0 = Instant::now();
        assert!(h.failed_at("a", &policy(1), t0));
        assert!(h.answered("a"));
        assert!(!h.is_ejected_at("a", t0));
        assert!(!h.answered("a"));
        for _ in 0..10 {
            assert!(!h.failed_at("b", &policy(0), t0));
        }
        assert!(!h.is_ejected_at("b", t0));
        assert!(h.failed_at("c", &policy(1), t0));
        assert_eq!(h.ejected(|_| true), vec!["c".to_string()]);
        assert!(
            h.ejected(|name| name != "c").is_empty(),
            "removed providers are forgotten"
        );
    }
}
