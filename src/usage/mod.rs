//! Usage: the events a service records, how they reach the collector, and the window the
//! collector aggregates them into.
//!
//! - `events`: the public event types, each converting into a `QueuedEvent` beside its
//!   definition;
//! - `queued_event`: `QueuedEvent`, the compact (≤ 32 bytes) form an event takes in the intake
//!   queue and in which the collector applies it;
//! - `counters`: the hot counters (a single-writer slot per recording thread);
//! - `intake`: the bounded lock-free queue of structured events;
//! - `collector`: the actor that owns the window and folds both into it;
//! - `window`: what one window accumulates and the figures it reports;
//! - `gate`: what may be collected now (nothing before consent; a level's sections);
//! - `clock`: where windows begin and end (monotonic, so a wall-clock step cannot bend them).

pub(crate) mod clock;
pub(crate) mod collector;
pub(crate) mod counters;
pub(crate) mod events;
pub(crate) mod gate;
pub(crate) mod intake;
pub(crate) mod queued_event;
pub(crate) mod window;
