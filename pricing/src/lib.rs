//! Model prices, token estimation and the cost of a request from the provider's usage.
//!
//! Pure and synchronous: no IO, no clock. Money is integer nano-USD (1e-9 USD).
