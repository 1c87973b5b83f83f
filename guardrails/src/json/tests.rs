//! Tests of the JSON walking.
