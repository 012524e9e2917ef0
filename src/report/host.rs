//! Facts about the host, gathered once at start, and the process-memory sampler.
//!
//! Only what the report needs is read: total RAM and the CPU list once, then this process's
//! resident memory on each sample (never a walk of every process, whose cost grows with the
//! host). Without the `host-facts` feature nothing is read from the system: `ram` is 0,
//! `cores` comes from the standard library and `used_memory` has no samples.

#[cfg(feature = "host-facts")]
use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind,
    System,
};

use super::wire::Os;

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
        let (ram, cpus) = ram_and_cpus();
        let cores = if cpus > 0 {
            cpus
        } else {
            std::thread::available_parallelism().map_or(0, |n| n.get())
        };
        let mut os = Os::default();
        os.family = std::env::consts::FAMILY.to_owned();
        os.name = std::env::consts::OS.to_owned();
        Self {
            arch: TARGET.to_owned(),
            cores: cores as u64,
            ram,
            os,
        }
    }
}

/// The target triple the crate was compiled for, e.g. `x86_64-unknown-linux-gnu`, as cargo
/// gave it to the build script.
const TARGET: &str = env!("ELECTRIC_TELEMETRY_TARGET");

/// Total RAM in bytes and the number of CPUs, or zeros where the system does not tell.
#[cfg(feature = "host-facts")]
fn ram_and_cpus() -> (u64, usize) {
    let refresh = RefreshKind::nothing()
        .with_memory(MemoryRefreshKind::nothing().with_ram())
        .with_cpu(CpuRefreshKind::nothing());
    // Where the platform does not tell, sysinfo answers 0 and an empty CPU list.
    let sys = System::new_with_specifics(refresh);
    (sys.total_memory(), sys.cpus().len())
}

#[cfg(not(feature = "host-facts"))]
fn ram_and_cpus() -> (u64, usize) {
    (0, 0)
}

/// Reads this process's resident memory.
pub(crate) struct MemorySampler {
    #[cfg(feature = "host-facts")]
    system: Option<(System, Pid)>,
}

impl MemorySampler {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(feature = "host-facts")]
            system: sysinfo::get_current_pid()
                .ok()
                .map(|pid| (System::new_with_specifics(RefreshKind::nothing()), pid)),
        }
    }

    /// Resident bytes now, or `None` where the platform does not tell (or the `host-facts`
    /// feature is off).
    pub(crate) fn sample(&mut self) -> Option<u64> {
        #[cfg(feature = "host-facts")]
        {
            let (system, pid) = self.system.as_mut()?;
            let pid = *pid;
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_memory(),
            );
            system.process(pid).map(|p| p.memory())
        }
        #[cfg(not(feature = "host-facts"))]
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_is_the_target_triple_cargo_built_for() {
        let facts = HostFacts::gather();
        assert!(facts.arch.starts_with(std::env::consts::ARCH));
        // Tests are built for the host, so the triple must be exactly rustc's host triple.
        let Ok(out) = std::process::Command::new("rustc").arg("-vV").output() else {
            eprintln!("rustc is not on PATH; only the arch prefix was checked");
            return;
        };
        let info = String::from_utf8_lossy(&out.stdout);
        let host = info.lines().find_map(|l| l.strip_prefix("host: "));
        assert_eq!(Some(facts.arch.as_str()), host);
    }

    #[cfg(feature = "host-facts")]
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

    #[cfg(feature = "host-facts")]
    #[test]
    fn memory_sample_is_the_resident_set() {
        // 64 MiB held and touched: resident, whatever else the process does.
        let held = vec![1u8; 64 << 20];
        let mut sampler = MemorySampler::new();
        let rss = sampler.sample().expect("resident memory on this platform");
        assert!(rss > 64 << 20, "64 MiB are resident, got {rss}");
        // On Linux the kernel says what the resident set is: the sample agrees with it
        // (not the virtual size, many times larger), give or take what other test threads
        // allocate in between.
        #[cfg(target_os = "linux")]
        {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .expect("VmRSS in /proc/self/status");
            let kernel = kib * 1024;
            assert!(
                rss.abs_diff(kernel) < 32 << 20,
                "sampled {rss}, the kernel says {kernel}"
            );
        }
        assert_eq!(held[held.len() - 1], 1);
    }
}
