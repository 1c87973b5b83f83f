//! The input estimate is never below the provider's count for OpenAI models, on a corpus of
//! varied prompts (multi-turn, tools, non-English, code, long system prompts, names).

mod common;

use common::reference::{self, load_corpus};
use tollgate_pricing::{Api, estimate_input_tokens};

#[test]
fn estimate_is_never_below_the_truth() {
    let corpus = load_corpus();
    assert!(corpus.len() >= 100);
    let mut below = Vec::new();
    for case in &corpus {
        let estimate = estimate_input_tokens(Api::ChatCompletions, &case.model, &case.body);
        let truth = reference::truth(case);
        if estimate < truth {
            below.push(format!(
                "{}: estimate {estimate} < truth {truth}",
                case.name
            ));
        }
    }
    assert!(below.is_empty(), "{}", below.join("\n"));
}

#[test]
fn recorded_counts_are_matched_closely() {
    // Where OpenAI reported the count, the estimate is exact for plain messages and within
    // the tool-framing allowance for tools.
    for case in load_corpus().iter().filter(|c| c.reported.is_some()) {
        let estimate = estimate_input_tokens(Api::ChatCompletions, &case.model, &case.body);
        let truth = case.reported.unwrap();
        let slack = if case.body.get("tools").is_some() {
            15
        } else {
            0
        };
        assert!(
            estimate >= truth && estimate <= truth + slack,
            "{}: {estimate} vs {truth}",
            case.name
        );
    }
}
