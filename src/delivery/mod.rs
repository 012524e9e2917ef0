//! Delivery: getting reports to the endpoint without losing them.
//!
//! - `sender`: the actor, on a thread of its own, that delivers the outbox in order;
//! - `outbox`: reports on disk until a 2xx, bounded, with losses counted;
//! - `retry`: the retry policy (waits, what a status means), a plain value;
//! - `http`: the awc client, TLS roots, one bounded POST;
//! - `response_limit`: the TCP stream that bounds what an endpoint may send back;
//! - `audit`: the optional file of every report sent;
//! - `log_only`: what stands in for the sender when reports are only logged.

pub(crate) mod audit;
pub(crate) mod http;
pub(crate) mod log_only;
pub(crate) mod outbox;
pub(crate) mod response_limit;
pub(crate) mod retry;
pub(crate) mod sender;
