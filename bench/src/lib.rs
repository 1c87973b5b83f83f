//! Whole-process load scenarios for tollgate: the load generator, its request bodies, the
//! results it reports and the Markdown report `bench/run.sh` writes into
//! `docs/benchmarks.md`.
//!
//! The binaries are thin: `load` drives [`load::run`], `report` renders [`report`], and
//! `passthrough` is the bare Pingora proxy tollgate's overhead is measured against.

pub mod body;
pub mod cpu;
pub mod load;
pub mod report;
pub mod stats;
