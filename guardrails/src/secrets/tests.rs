//! Tests of the secret detectors.
