//! End-to-end test support: the mock OpenAI-compatible provider and the harness that
//! starts tollgate against it.

pub mod mock;

pub mod harness;
