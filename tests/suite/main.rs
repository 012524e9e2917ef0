//! The integration tests that need no process of their own, as modules of one test binary
//! (one link instead of one per file). Each module is one behaviour; its own docs say which.
//!
//! A test belongs here unless it needs the whole process: a global tracing subscriber, a
//! global allocator, the process environment, signals, or this binary run again as a child.
//! Those are the files beside this folder, each saying at its top why it is a binary of its own.

#[path = "../common/mod.rs"]
mod common;

mod collector;
mod config;
mod consent;
mod end_to_end;
mod harmful_settings;
mod intake;
mod missed_ticks;
mod privacy;
mod scheduler;
mod schema;
mod sender;
mod sketches;
mod spread;
mod stop;
mod tls;
