//! The collector's per-client tables, exact in the usual case and bounded under any load.
//!
//! - The connections table knows which clients are connected, so that a disconnect of a client that
//!   never connected changes nothing. It tracks up to [`TRACKED_CONNECTED`] clients by id;
//!   connections of further clients are kept as a bare count. The number of connections stays
//!   exact whenever every disconnect matches a connect; the one thing lost past the limit is
//!   telling a bogus disconnect from an untracked client's (it then takes one off the bare
//!   count, never below zero).
//! - The continued-subscriptions table counts each client's continued subscriptions in a window, exactly
//!   for up to [`SAMPLED_CLIENTS`] clients. Beyond that it keeps a uniform sample of clients
//!   chosen by their keyed hash (half of them, then a quarter, ...), each sampled client's count
//!   complete and standing for 2^level clients, like adaptive (Wegman's) sampling.
//!
//! Both tables are hash maps keyed by the already keyed and random [`AnonymousId`], so they use
//! it as the hash instead of hashing it again.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::distinct::{mix, AnonymousId};
use super::summary::Summary;

/// The most connected clients tracked by id. A hash table holding this many stays at 16 384
/// buckets (≈ 270 KiB) however clients come and go.
pub const TRACKED_CONNECTED: usize = 7 * 1024;

/// The most clients whose continued subscriptions are counted one by one in a window.
pub const SAMPLED_CLIENTS: usize = 4 * 1024;

/// Passes an [`AnonymousId`]'s keyed hash through: it is already random.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<AnonymousId, V, BuildHasherDefault<IdHasher>>;

/// Which clients are connected, and how many connections there are.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    /// Open connections per tracked client (a client may hold several).
    tracked: IdMap<u64>,
    /// Open connections of clients that connected while the table was full.
    untracked: u64,
    /// `tracked`'s sum plus `untracked`.
    total: u64,
}

impl Connections {
    pub(crate) fn connect(&mut self, client: AnonymousId) {
        if let Some(n) = self.tracked.get_mut(&client) {
            *n = n.saturating_add(1);
        } else if self.tracked.len() < TRACKED_CONNECTED {
            self.tracked.insert(client, 1);
        } else {
            self.untracked = self.untracked.saturating_add(1);
        }
        self.total = self.total.saturating_add(1);
    }

    /// Never underflows: a disconnect that matches no connection changes nothing.
    pub(crate) fn disconnect(&mut self, client: AnonymousId) {
        if let Some(n) = self.tracked.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.tracked.remove(&client);
            }
        } else if self.untracked > 0 {
            self.untracked -= 1;
        } else {
            return;
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Open connections now.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }
}

/// Continued subscriptions per client over one window.
#[derive(Debug, Default)]
pub(crate) struct ContinuedPerClient {
    counts: IdMap<u64>,
    /// Clients are sampled when their remixed hash has at least this many leading zeros.
    level: u32,
}

impl ContinuedPerClient {
    pub(crate) fn record(&mut self, client: AnonymousId) {
        if !self.sampled(client) {
            return;
        }
        let n = self.counts.entry(client).or_insert(0);
        *n = n.saturating_add(1);
        while self.counts.len() > SAMPLED_CLIENTS {
            self.level += 1;
            // Rebuilt rather than retained in place: no tombstones, so the table never grows
            // past the size SAMPLED_CLIENTS entries need.
            let level = self.level;
            self.counts = std::mem::take(&mut self.counts)
                .into_iter()
                .filter(|&(client, _)| Self::sampled_at(client, level))
                .collect();
        }
    }

    fn sampled(&self, client: AnonymousId) -> bool {
        Self::sampled_at(client, self.level)
    }

    fn sampled_at(client: AnonymousId, level: u32) -> bool {
        // Remixed: the table indexes by the raw hash's low bits and tags by its top bits, so
        // sampling on either would crowd the sampled clients into a few buckets.
        mix(client.hash()).leading_zeros() >= level
    }

    /// The per-client counts as a summary; past the sampling threshold each sampled client
    /// stands for 2^level clients.
    pub(crate) fn summary(&self) -> Summary {
        let weight = 1u64 << self.level.min(63);
        let mut summary = Summary::new();
        self.counts
            .values()
            .for_each(|&n| summary.record_n(n, weight));
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> AnonymousId {
        AnonymousId::new(&format!("client-{i}"))
    }

    #[test]
    fn connections_are_exact_and_ignore_unknown_disconnects() {
        let mut c = Connections::default();
        c.disconnect(id(0));
        c.connect(id(1));
        c.connect(id(1));
        c.connect(id(2));
        c.disconnect(id(1));
        c.disconnect(id(3));
        assert_eq!(c.total(), 2);
        c.disconnect(id(1));
        c.disconnect(id(1));
        c.disconnect(id(2));
        assert_eq!(c.total(), 0);
    }

    #[test]
    fn connections_past_the_tracked_limit_are_still_counted_exactly() {
        let mut c = Connections::default();
        let n = TRACKED_CONNECTED as u64 + 500;
        (0..n).for_each(|i| c.connect(id(i)));
        assert_eq!(c.total(), n);
        assert_eq!(c.tracked.len(), TRACKED_CONNECTED);
        // Disconnect in another order than the connects, then churn.
        (0..n).rev().step_by(2).for_each(|i| c.disconnect(id(i)));
        (0..n).rev().step_by(2).for_each(|i| c.connect(id(i)));
        assert_eq!(c.total(), n);
        (0..n).for_each(|i| c.disconnect(id(i)));
        assert_eq!(c.total(), 0);
        c.disconnect(id(1));
        assert_eq!(c.total(), 0, "never below zero");
    }

    #[test]
    fn continued_counts_are_exact_below_the_sample_threshold() {
        let mut p = ContinuedPerClient::default();
        for i in 0..100u64 {
            for _ in 0..=(i % 3) {
                p.record(id(i));
            }
        }
        let stats = p.summary().stats();
        assert_eq!((stats.min, stats.max), (1, 3));
        assert_eq!(p.summary().len(), 100);
        assert_eq!(stats.mode, Some(1));
    }

    #[test]
    fn continued_counts_past_the_threshold_stay_bounded_and_representative() {
        let mut p = ContinuedPerClient::default();
        let clients = 50_000u64;
        for i in 0..clients {
            // A quarter of the clients continue 4 times, the rest once.
            let times = if i % 4 == 0 { 4 } else { 1 };
            (0..times).for_each(|_| p.record(id(i)));
        }
        assert!(p.counts.len() <= SAMPLED_CLIENTS);
        assert!(p.level >= 3);
        let summary = p.summary();
        let estimated = summary.len() as f64;
        assert!(
            (estimated / clients as f64 - 1.0).abs() < 0.1,
            "{estimated}"
        );
        let stats = summary.stats();
        assert_eq!(stats.mode, Some(1));
        assert_eq!(stats.median.as_u64(), Some(1));
        assert!((stats.mean - 1.75).abs() < 0.15, "{}", stats.mean);
    }
}
