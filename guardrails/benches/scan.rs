//! Placeholder until the scan benchmarks land.
fn main() {}
