//! Bounded aggregates: summaries, distinct counts and per-client tables.
//!
//! Each one is exact in the usual case and switches to a fixed-size approximation with a
//! documented error bound past a documented size, so the collector's memory stays bounded
//! whatever the load. None of them knows about actors, events or reports.

pub(crate) mod clients;
pub(crate) mod distinct;
pub(crate) mod summary;
