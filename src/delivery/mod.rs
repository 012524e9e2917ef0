//! Delivery: getting reports to the endpoint without losing them.
//!
//! - `handle`: the one typed interface the rest of the crate holds (sender or log-only);
//! - `sender`: the actor, on a thread of its own, that delivers the outbox in order, and the
//!   only thread that touches the outbox's files;
//! - `outbox`: reports on disk until a 2xx, bounded, with losses counted: the queue and its
//!   bounds (`mod.rs`), the files (`layout.rs`), start-up recovery and take-over
//!   (`startup.rs`), and the recovery file of the window in progress (`recovery_file.rs`);
//! - `instance_dir`: which outbox directory a live instance owns (one per instance);
//! - `retry`: the retry policy (waits, what a status means), a plain value;
//! - `client`: the awc client: our own rustls configuration (ring, webpki roots, CA file),
//!   direct or through a proxy;
//! - `tunnel`: the CONNECT tunnel through a proxy (which proxy is configuration's business);
//! - `http`: one bounded POST and how it ended;
//! - `response_limit`: the TCP stream that bounds what an endpoint may send back;
//! - `audit`: the optional file of every report sent;
//! - `log_only`: what stands in for the sender when reports are only logged.

pub(crate) mod audit;
pub(crate) mod client;
pub(crate) mod handle;
pub(crate) mod http;
pub(crate) mod instance_dir;
pub(crate) mod log_only;
pub(crate) mod outbox;
pub(crate) mod response_limit;
pub(crate) mod retry;
pub(crate) mod sender;
pub(crate) mod tunnel;
