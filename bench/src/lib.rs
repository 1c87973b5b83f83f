//! Whole-process load scenarios for tollgate.
