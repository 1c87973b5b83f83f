//! PII and secret detection, redaction, and the streaming scanner.
//!
//! Pure and synchronous: no IO. Findings carry types and spans, never leave values in logs.
