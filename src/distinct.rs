//! Anonymous ids and distinct counts.
//!
//! A client or user id is hashed with a key drawn at random once per process the moment it is
//! wrapped in an [`AnonymousId`], so the raw id never reaches the collector's mailbox or memory
//! and the same id hashes differently in every process. Only counts ever leave the process.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

/// A client or user id, hashed with this process's random key (SipHash-1-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnonymousId(u64);

impl AnonymousId {
    /// Hashes a raw id. The raw id is not kept.
    pub fn new(raw: &str) -> Self {
        static KEY: OnceLock<RandomState> = OnceLock::new();
        Self(KEY.get_or_init(RandomState::new).hash_one(raw))
    }
}

impl From<&str> for AnonymousId {
    fn from(raw: &str) -> Self {
        Self::new(raw)
    }
}

impl From<&String> for AnonymousId {
    fn from(raw: &String) -> Self {
        Self::new(raw)
    }
}

/// How many different ids were seen.
#[derive(Debug, Clone, Default)]
pub struct DistinctCount {
    seen: HashSet<AnonymousId>,
}

impl DistinctCount {
    /// An empty count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that `id` was seen.
    pub fn insert(&mut self, id: AnonymousId) {
        self.seen.insert(id);
    }

    /// The number of different ids seen.
    pub fn count(&self) -> u64 {
        self.seen.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_raw_id_hashes_the_same_within_a_process() {
        assert_eq!(AnonymousId::new("client-1"), AnonymousId::new("client-1"));
        assert_ne!(AnonymousId::new("client-1"), AnonymousId::new("client-2"));
    }

    #[test]
    fn distinct_count_counts_each_id_once() {
        let mut d = DistinctCount::new();
        for raw in ["a", "b", "a", "c", "b", "a"] {
            d.insert(raw.into());
        }
        assert_eq!(d.count(), 3);
        assert_eq!(DistinctCount::new().count(), 0);
    }
}
