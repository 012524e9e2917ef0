//! The gate: what may be collected right now.
//!
//! One small atomic shared by the handle, the collector and the scheduler: nothing (no
//! consent yet, consent withdrawn, shut down) or a [`Level`]. Each usage event feeds one
//! section of the report (`data/environment`, `data/usage` or `data/resources`), and the
//! level each section belongs to is read once from the newest schema's `x-level`
//! (`electric_telemetry_report::level_of`), never written here: an event whose section is
//! above the level is dropped before it is queued, and [`Telemetry::record_with`] does not
//! even build it (no hashing of client ids at `basic`). What is not sent is not collected.
//!
//! [`Telemetry::record_with`]: crate::Telemetry::record_with

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use electric_telemetry_report::{level_of, Level};

/// The part of the report an event feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `data/environment` (the Postgres version).
    Environment = 0,
    /// `data/usage`.
    Usage = 1,
    /// `data/resources` (memory samples, WAL figures).
    Resources = 2,
}

impl Section {
    fn path(self) -> &'static str {
        match self {
            Section::Environment => "data/environment",
            Section::Usage => "data/usage",
            Section::Resources => "data/resources",
        }
    }
}

/// `0`: collect nothing; `1 + level`: collect what `level` sends.
#[derive(Debug)]
pub struct Gate {
    open: AtomicU8,
    /// Per section, the smallest `open` value that lets it through.
    needs: [u8; 3],
}

fn code(level: Level) -> u8 {
    1 + level as u8
}

impl Gate {
    /// A gate open at `level`, or shut.
    pub fn new(level: Option<Level>) -> Self {
        let needs = [Section::Environment, Section::Usage, Section::Resources]
            .map(|s| code(level_of(s.path()).unwrap_or(Level::Full)));
        Self {
            open: AtomicU8::new(level.map_or(0, code)),
            needs,
        }
    }

    /// Whether events feeding `section` are collected now.
    #[inline]
    pub fn allows(&self, section: Section) -> bool {
        let open = self.open.load(Relaxed);
        open != 0 && open >= self.needs[section as usize]
    }

    /// The level collected now, `None` when nothing is.
    pub fn level(&self) -> Option<Level> {
        match self.open.load(Relaxed) {
            0 => None,
            n => Level::ALL.get(usize::from(n - 1)).copied(),
        }
    }

    /// Opens the gate at `level`, or shuts it.
    pub fn set(&self, level: Option<Level>) {
        self.open.store(level.map_or(0, code), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_lets_through_its_sections_and_the_ones_below() {
        let gate = Gate::new(None);
        assert!(!gate.allows(Section::Environment));
        assert_eq!(gate.level(), None);
        gate.set(Some(Level::Basic));
        assert!(gate.allows(Section::Environment));
        assert!(!gate.allows(Section::Usage) && !gate.allows(Section::Resources));
        gate.set(Some(Level::Usage));
        assert!(gate.allows(Section::Usage) && !gate.allows(Section::Resources));
        gate.set(Some(Level::Full));
        assert!(gate.allows(Section::Resources));
        assert_eq!(gate.level(), Some(Level::Full));
        gate.set(None);
        assert!(!gate.allows(Section::Environment));
    }
}
