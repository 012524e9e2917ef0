//! Delivery: getting reports to the endpoint without losing them.
//!
//! - `sender`: the actor, on a thread of its own, that delivers the outbox in order;
//! - `outbox`: reports on disk until a 2xx, bounded, with losses counted;
//! - `instance_dir`: which outbox directory a live instance owns (one per instance);
//! - `checkpoint`: the current window kept on disk, so a kill loses at most one period;
//! - `retry`: the retry policy (waits, what a status means), a plain value;
//! - `client`: the awc client: our own rustls configuration (ring, webpki roots, CA file),
//!   direct or through a proxy;
//! - `tunnel`: the CONNECT tunnel through a proxy (which proxy is configuration's business);
//! - `http`: one bounded POST and how it ended;
//! - `response_limit`: the TCP stream that bounds what an endpoint may send back;
//! - `audit`: the optional file of every report sent;
//! - `log_only`: what stands in for the sender when reports are only logged.

pub(crate) mod audit;
pub(crate) mod checkpoint;
pub(crate) mod client;
pub(crate) mod http;
pub(crate) mod instance_dir;
pub(crate) mod log_only;
pub(crate) mod outbox;
pub(crate) mod response_limit;
pub(crate) mod retry;
pub(crate) mod sender;
pub(crate) mod tunnel;
