//! A model of the store for property tests: any interleaving of reserve, commit, release,
//! extend, time passing and reaping must match the model exactly, keep
//! `spent + reserved <= limit` on every scope (beyond what commits after reaping add), and
//! end with nothing reserved.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;
use proptest::prelude::*;
use tollgate_budget::{
    CommitOutcome, Decision, ExtendOutcome, Nanos, Period, ReleaseOutcome, ScopeBudget, window_id,
};

use super::{Harness, budget, req};

#[derive(Debug, Clone)]
pub enum Op {
    Reserve {
        agent: u8,
        run: Option<u8>,
        amount: Nanos,
        min_pct: Nanos,
        ttl_s: u64,
    },
    Commit {
        pick: usize,
        pct: Nanos,
    },
    Release {
        pick: usize,
    },
    Extend {
        pick: usize,
        ttl_s: u64,
    },
    Advance {
        secs: i64,
    },
    Reap,
}

pub fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0u8..3, proptest::option::of(0u8..2), 0i64..400, 0i64..=100, 1u64..40)
            .prop_map(|(agent, run, amount, min_pct, ttl_s)| Op::Reserve { agent, run, amount, min_pct, ttl_s }),
        2 => (any::<usize>(), 0i64..=100).prop_map(|(pick, pct)| Op::Commit { pick, pct }),
        1 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => (any::<usize>(), 1u64..40).prop_map(|(pick, ttl_s)| Op::Extend { pick, ttl_s }),
        2 => (1i64..45).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Reap),
    ];
    proptest::collection::vec(op, 1..max)
}

/// Starts two minutes before midnight so day windows roll over inside a case.
pub fn start() -> chrono::DateTime<chrono::Utc> {
    "2026-11-22T23:58:00Z".parse().unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Active,
    Reaped,
    Committed { actual: Nanos, late: bool },
    Released,
}

#[derive(Debug)]
struct Res {
    id: String,
    lines: Vec<(String, String)>,
    granted: Nanos,
    expires_ms: i64,
    state: State,
}

type Line = (String, String);

#[derive(Default)]
struct Model {
    spent: BTreeMap<Line, Nanos>,
    reserved: BTreeMap<Line, Nanos>,
    /// Spend committed after the reaper had given the hold back: the only way past a limit.
    late: BTreeMap<Line, Nanos>,
    res: Vec<Res>,
}

fn scopes_for(agent: u8, run: Option<u8>) -> Vec<ScopeBudget> {
    let agent_scope = format!("p/w/a{agent}");
    let mut s = vec![
        budget("p", 1000, Period::Total),
        budget("p/w", 600, Period::Day),
        budget(&agent_scope, 300, Period::Month),
    ];
    if let Some(r) = run {
        s.push(budget(
            &format!("{agent_scope}/run:r{r}"),
            200,
            Period::Total,
        ));
    }
    s
}

fn limit_of(scope: &str) -> Nanos {
    match scope.matches('/').count() {
        0 => 1000,
        1 => 600,
        2 => 300,
        _ => 200,
    }
}

impl Model {
    fn add(map: &mut BTreeMap<Line, Nanos>, lines: &[Line], delta: Nanos) {
        for l in lines {
            *map.entry(l.clone()).or_default() += delta;
        }
    }

    fn reap(&mut self, now_ms: i64) -> usize {
        let mut n = 0;
        for r in self
            .res
            .iter_mut()
            .filter(|r| r.state == State::Active && r.expires_ms <= now_ms)
        {
            Self::add(&mut self.reserved, &r.lines, -r.granted);
            r.state = State::Reaped;
            n += 1;
        }
        n
    }
}

/// What `ReserveAnswer::remaining` must say once `held` sits on every scope.
fn rooms_after(lines: &[Line], rooms: &[Nanos], held: Nanos) -> Vec<(String, Nanos)> {
    lines
        .iter()
        .zip(rooms)
        .map(|(l, r)| (l.0.clone(), (r - held).max(0)))
        .collect()
}

/// Runs `ops` against the store and the model side by side.
pub async fn check(h: Harness, ops: Vec<Op>) {
    let mut m = Model::default();
    let s = &h.store;
    for op in ops {
        let now = h.now();
        let now_ms = now.timestamp_millis();
        let pick = |m: &Model, i: usize| (!m.res.is_empty()).then(|| i % m.res.len());
        match op {
            Op::Reserve {
                agent,
                run,
                amount,
                min_pct,
                ttl_s,
            } => {
                m.reap(now_ms);
                let scopes = scopes_for(agent, run);
                let id = format!("r{}", m.res.len());
                let mut r = req(&id, &scopes, amount, amount * min_pct / 100);
                r.ttl = Duration::from_secs(ttl_s);
                let answer = s.reserve(&r).await.unwrap();
                let lines: Vec<Line> = scopes
                    .iter()
                    .map(|b| {
                        let p = b.budget.unwrap().period;
                        (b.scope.clone(), window_id(p, None, now))
                    })
                    .collect();
                let rooms: Vec<Nanos> = lines
                    .iter()
                    .map(|l| {
                        let used = m.spent.get(l).copied().unwrap_or(0)
                            + m.reserved.get(l).copied().unwrap_or(0);
                        limit_of(&l.0) - used
                    })
                    .collect();
                let (tight, room) =
                    rooms
                        .iter()
                        .enumerate()
                        .fold(
                            (0, Nanos::MAX),
                            |best, (i, &r)| if r < best.1 { (i, r) } else { best },
                        );
                let granted = if room <= 0 {
                    None
                } else {
                    Some(amount.min(room)).filter(|g| *g >= r.min_amount)
                };
                match granted {
                    None => {
                        assert!(
                            !answer.decision.is_allowed(),
                            "model denies, store said {answer:?}"
                        );
                        assert_eq!(answer.tightest, Some((lines[tight].0.clone(), room.max(0))));
                        assert_eq!(answer.remaining, rooms_after(&lines, &rooms, 0));
                    }
                    Some(g) => {
                        let want = if g == amount {
                            Decision::Allow
                        } else {
                            Decision::AllowWithCaps
                        };
                        assert_eq!(
                            (answer.decision.clone(), answer.granted),
                            (want, g),
                            "{answer:?}"
                        );
                        assert_eq!(answer.tightest, Some((lines[tight].0.clone(), room - g)));
                        assert_eq!(answer.remaining, rooms_after(&lines, &rooms, g));
                        Model::add(&mut m.reserved, &lines, g);
                        let expires_ms = now_ms + i64::try_from(ttl_s).unwrap() * 1000;
                        m.res.push(Res {
                            id,
                            lines,
                            granted: g,
                            expires_ms,
                            state: State::Active,
                        });
                    }
                }
            }
            Op::Commit { pick: p, pct } => {
                let Some(i) = pick(&m, p) else { continue };
                let actual = m.res[i].granted * pct / 100;
                let got = s.commit("p", &m.res[i].id, actual).await.unwrap();
                let r = &mut m.res[i];
                let want = match r.state {
                    State::Active | State::Reaped => {
                        let reaped = r.state == State::Reaped;
                        let late = reaped || now_ms >= r.expires_ms;
                        if !reaped {
                            Model::add(&mut m.reserved, &r.lines, -r.granted);
                        } else {
                            Model::add(&mut m.late, &r.lines, actual);
                        }
                        Model::add(&mut m.spent, &r.lines, actual);
                        r.state = State::Committed { actual, late };
                        CommitOutcome::Committed {
                            actual,
                            after_expiry: late,
                            replayed: false,
                        }
                    }
                    State::Committed { actual, late } => CommitOutcome::Committed {
                        actual,
                        after_expiry: late,
                        replayed: true,
                    },
                    State::Released => CommitOutcome::AlreadyReleased,
                };
                assert_eq!(got, want);
            }
            Op::Release { pick: p } => {
                let Some(i) = pick(&m, p) else { continue };
                let got = s.release("p", &m.res[i].id).await.unwrap();
                let r = &mut m.res[i];
                let want = match r.state {
                    State::Active => {
                        Model::add(&mut m.reserved, &r.lines, -r.granted);
                        r.state = State::Released;
                        ReleaseOutcome::Released { replayed: false }
                    }
                    State::Reaped => ReleaseOutcome::Expired,
                    State::Committed { actual, .. } => ReleaseOutcome::AlreadyCommitted { actual },
                    State::Released => ReleaseOutcome::Released { replayed: true },
                };
                assert_eq!(got, want);
            }
            Op::Extend { pick: p, ttl_s } => {
                let Some(i) = pick(&m, p) else { continue };
                let got = s
                    .extend("p", &m.res[i].id, Duration::from_secs(ttl_s))
                    .await
                    .unwrap();
                let r = &mut m.res[i];
                let want = match r.state {
                    State::Active if now_ms < r.expires_ms => {
                        r.expires_ms = now_ms + i64::try_from(ttl_s).unwrap() * 1000;
                        ExtendOutcome::Extended {
                            expires_at: now + TimeDelta::seconds(ttl_s as i64),
                        }
                    }
                    State::Active | State::Reaped => ExtendOutcome::Expired,
                    _ => ExtendOutcome::Settled,
                };
                assert_eq!(got, want);
            }
            Op::Advance { secs } => h.clock.advance(TimeDelta::seconds(secs)),
            Op::Reap => {
                let want = m.reap(now_ms);
                assert_eq!(s.reap_expired(now).await.unwrap(), want);
            }
        }
        compare(&h, &m).await;
    }

    // Settle half of what is still held, leave the rest to the reaper.
    let active: Vec<usize> = (0..m.res.len())
        .filter(|&i| m.res[i].state == State::Active)
        .collect();
    for (n, &i) in active.iter().enumerate() {
        if n % 2 == 0 {
            s.release("p", &m.res[i].id).await.unwrap();
        }
    }
    h.clock.advance(TimeDelta::hours(1));
    let left = active.len() - active.len().div_ceil(2);
    assert_eq!(s.reap_expired(h.now()).await.unwrap(), left);
    for row in s.balances(None).await.unwrap() {
        assert_eq!(
            row.reserved, 0,
            "{row:?} still holds money after everything settled"
        );
    }
}

async fn compare(h: &Harness, m: &Model) {
    let rows = h.store.balances(Some("p")).await.unwrap();
    for row in &rows {
        let line = (row.scope.clone(), row.window.clone());
        let late = m.late.get(&line).copied().unwrap_or(0);
        assert_eq!(
            row.spent,
            m.spent.get(&line).copied().unwrap_or(0),
            "spent of {line:?}"
        );
        assert_eq!(
            row.reserved,
            m.reserved.get(&line).copied().unwrap_or(0),
            "reserved of {line:?}"
        );
        assert_eq!(row.limit, limit_of(&row.scope));
        assert!(
            row.spent + row.reserved <= row.limit + late,
            "{row:?} is past its limit (late spend {late})"
        );
    }
    let listed = |map: &BTreeMap<Line, Nanos>| {
        map.iter()
            .filter(|(_, v)| **v != 0)
            .all(|(l, _)| rows.iter().any(|r| r.scope == l.0 && r.window == l.1))
    };
    assert!(
        listed(&m.spent) && listed(&m.reserved),
        "a window the model knows is missing from balances"
    );
}
