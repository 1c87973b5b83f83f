//! Drives a `StreamGate` the way the proxy will, with decisions arriving late and out of order.

use serde_json::Value;
use tollgate_toolcalls::{Outcome, ProposedCall, Step, StreamGate};

/// SplitMix64: a small seeded generator, so every run of a test sees the same choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

pub struct Run {
    pub emitted: Vec<Value>,
    pub decided: Vec<ProposedCall>,
}

/// Feeds every event, resolving announced calls at random later points and in random order,
/// then ends the stream and resolves the rest. The gate must be idle at the end.
pub fn drive(
    gate: &mut StreamGate,
    events: &[Value],
    decide: &dyn Fn(&ProposedCall) -> Outcome,
    rng: &mut Rng,
) -> Run {
    let mut run = Run {
        emitted: Vec::new(),
        decided: Vec::new(),
    };
    let mut waiting: Vec<ProposedCall> = Vec::new();
    let take = |steps: Vec<Step>, run: &mut Run, waiting: &mut Vec<ProposedCall>| {
        for step in steps {
            match step {
                Step::Emit(v) => run.emitted.push(v),
                Step::Decide(c) => {
                    assert!(
                        !run.decided.iter().any(|d| d.id == c.id),
                        "call {} announced twice",
                        c.id
                    );
                    run.decided.push(c.clone());
                    waiting.push(c);
                }
            }
        }
    };
    for event in events {
        let steps = gate.push(event);
        take(steps, &mut run, &mut waiting);
        while !waiting.is_empty() && rng.chance(40) {
            let call = waiting.remove(rng.below(waiting.len()));
            let steps = gate.resolve(&call.id, decide(&call));
            take(steps, &mut run, &mut waiting);
        }
    }
    let steps = gate.finish();
    take(steps, &mut run, &mut waiting);
    while !waiting.is_empty() {
        let call = waiting.remove(rng.below(waiting.len()));
        let steps = gate.resolve(&call.id, decide(&call));
        take(steps, &mut run, &mut waiting);
    }
    assert!(
        gate.is_idle(),
        "gate still holds something after every call was resolved"
    );
    run
}
