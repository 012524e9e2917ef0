//! Facts about the host, gathered once at start, and the process-memory sampler.
//!
//! `sysinfo::System::new_all()` walks every process (~16 ms and growing); we ask only for
//! what the report needs: total RAM and the CPU list once, then this process's resident memory
//! on each sample.

use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind,
    System,
};

use crate::report::Os;

/// What the report says about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFacts {
    pub arch: String,
    pub cores: u64,
    pub ram: u64,
    pub os: Os,
}

impl HostFacts {
    pub(crate) fn gather() -> Self {
        let refresh = RefreshKind::nothing()
            .with_memory(MemoryRefreshKind::nothing().with_ram())
            .with_cpu(CpuRefreshKind::nothing());
        let (ram, cpus) = match System::new_with_specifics(refresh) {
            Ok(sys) => (sys.total_memory(), sys.cpus().len()),
            Err(e) => {
                tracing::debug!(error = %e, "telemetry could not read RAM and CPUs; sending 0");
                (0, 0)
            }
        };
        let cores = if cpus > 0 {
            cpus
        } else {
            std::thread::available_parallelism().map_or(0, |n| n.get())
        };
        Self {
            arch: target_triple(),
            cores: cores as u64,
            ram,
            os: Os {
                family: std::env::consts::FAMILY.to_owned(),
                name: std::env::consts::OS.to_owned(),
            },
        }
    }
}

/// The target triple the crate was compiled for, e.g. `x86_64-unknown-linux-gnu`.
fn target_triple() -> String {
    let vendor = if cfg!(target_vendor = "apple") {
        "apple"
    } else if cfg!(target_vendor = "pc") {
        "pc"
    } else {
        "unknown"
    };
    let env = if cfg!(target_env = "gnu") {
        "-gnu"
    } else if cfg!(target_env = "musl") {
        "-musl"
    } else if cfg!(target_env = "msvc") {
        "-msvc"
    } else {
        ""
    };
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    format!("{}-{vendor}-{os}{env}", std::env::consts::ARCH)
}

/// Reads this process's resident memory.
pub(crate) struct MemorySampler {
    system: Option<System>,
    pid: Option<Pid>,
}

impl MemorySampler {
    pub(crate) fn new() -> Self {
        let system = System::new_with_specifics(RefreshKind::nothing()).ok();
        let pid = sysinfo::get_current_pid().ok();
        Self { system, pid }
    }

    /// Resident bytes now, or `None` where the platform does not tell.
    pub(crate) fn sample(&mut self) -> Option<u64> {
        let (system, pid) = (self.system.as_mut()?, self.pid?);
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map(|p| p.memory())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_are_plausible() {
        let facts = HostFacts::gather();
        assert!(facts.cores >= 1);
        assert!(facts.ram > 0);
        assert!(facts.arch.starts_with(std::env::consts::ARCH));
        #[cfg(target_os = "linux")]
        assert_eq!(
            (facts.os.family.as_str(), facts.os.name.as_str()),
            ("unix", "linux")
        );
    }

    #[test]
    fn memory_sample_is_the_resident_set() {
        let mut sampler = MemorySampler::new();
        let rss = sampler.sample().expect("resident memory on this platform");
        assert!(
            rss > 1 << 20,
            "a test process uses more than 1 MiB, got {rss}"
        );
    }
}
