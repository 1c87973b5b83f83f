//! Measures precision and recall per type on the seeded generator (and, if present, on
//! the shared tuning corpora), and false positives per MB on benign text.
fn main() {}
