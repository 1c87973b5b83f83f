//! The spend authority: scopes, reserve/commit/release and their decisions, behind one
//! store seam with an embedded and a Redis backend.
