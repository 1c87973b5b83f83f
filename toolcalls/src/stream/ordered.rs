//! Placeholder replaced below.
use super::Step;
use crate::calls::Outcome;
use serde_json::Value;
#[derive(Debug)]
pub(super) struct OrderedGate;
impl OrderedGate {
    pub(super) fn anthropic() -> Self {
        OrderedGate
    }
    pub(super) fn responses() -> Self {
        OrderedGate
    }
    pub(super) fn push(&mut self, e: &Value) -> Vec<Step> {
        vec![Step::Emit(e.clone())]
    }
    pub(super) fn resolve(&mut self, _: &str, _: Outcome) -> Vec<Step> {
        Vec::new()
    }
    pub(super) fn finish(&mut self) -> Vec<Step> {
        Vec::new()
    }
    pub(super) fn is_idle(&self) -> bool {
        true
    }
}
