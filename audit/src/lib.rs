//! The tamper-evident audit trail: hash-chained records, sinks, verification and queries.
