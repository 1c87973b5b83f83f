//! Tests of the PII detectors.
