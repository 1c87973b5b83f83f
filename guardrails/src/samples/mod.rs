//! Seeded generator of labelled samples.
