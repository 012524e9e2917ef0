//! Report spreading, with paused tokio time and real actors (collector, scheduler, and an actor
//! that keeps what it is handed with the paused clock's time): each instance's ticks follow a
//! phase derived from its ids, predictable from the documented formula, and a fleet started in
//! the same second reports at different moments.

use std::time::Duration;

use crate::common::env_of;
use crate::common::paused::{pass_in_steps, Kept};
use actix::prelude::*;
use electric_telemetry::internals::*;
use electric_telemetry::*;
use tokio::time::{pause, Instant};

const MS: Duration = Duration::from_millis(1);
const CLUSTER: u128 = 0x5eed_0000_0000_4000_8000_0000_0000_0009;

/// A scheduler for `instance` of the test cluster, handing its reports to `kept`.
fn start_scheduler(
    kept: &Addr<Kept>,
    storage: &tempfile::TempDir,
    instance: &str,
    config: TelemetryConfigBuilder,
) {
    let config = config
        .storage_dir(storage.path())
        .cluster_uuid(uuid::Uuid::from_u128(CLUSTER))
        .instance_id(instance)
        .build()
        .unwrap();
    Scheduler::new(
        &config,
        Collector::new().start(),
        kept.clone().recipient(),
        kept.clone().recipient(),
    )
    .start();
}

/// The documented phase (docs/delivery.md, src/scheduler/spread.rs), written out again: it must
/// not change between versions, so that an operator (and this test) can predict it.
fn documented_phase(cluster: u128, instance: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let cluster = uuid::Uuid::from_u128(cluster);
    for &b in b"electric-telemetry/phase/v1"
        .iter()
        .chain(cluster.as_bytes())
        .chain(instance.as_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[actix_rt::test]
async fn ticks_follow_the_phase_derived_from_the_ids() {
    pause();
    let storage = tempfile::tempdir().unwrap();
    let kept = Kept::default();
    let addr = kept.clone().start();
    let start = Instant::now();
    start_scheduler(&addr, &storage, "instance-7", TelemetryConfig::builder());
    tokio::task::yield_now().await;

    let (d, interval) = (Duration::from_secs(300), Duration::from_secs(4 * 3600));
    let p = documented_phase(CLUSTER, "instance-7");
    let first = d + d.mul_f64(p / 2.0);
    let mut steady = d + interval.mul_f64(p);
    if steady < first + interval / 2 {
        steady += interval;
    }
    let expected = [first, steady, steady + interval, steady + 2 * interval];

    let second = Duration::from_secs(1);
    let mut now = Duration::ZERO;
    for (n, due) in expected.iter().enumerate() {
        // Nothing until a millisecond before it is due, then that report.
        pass_in_steps(*due - MS - now, second).await;
        assert_eq!(
            kept.times("instance-7").len(),
            n,
            "report {n} not before {due:?}"
        );
        pass_in_steps(2 * MS, MS).await;
        now = *due + MS;
        assert_eq!(
            kept.times("instance-7").len(),
            n + 1,
            "report {n} at {due:?}"
        );
    }
    let times = kept.times("instance-7");
    assert!(times[0] - start >= d, "never before first_report_in");
    assert!(
        times[0] - start <= d + d / 2,
        "and at most half of it later"
    );
    assert_eq!(
        times[3] - times[2],
        interval,
        "anchored: exactly one interval apart"
    );
}

/// 12 instances of one cluster, started within the same second, 12 s interval: the slots
/// (2 s each) of their steady-state reports (all but each instance's first), as counts.
async fn fleet_slots(spread: bool) -> [usize; 6] {
    let storage = tempfile::tempdir().unwrap();
    let kept = Kept::default();
    let addr = kept.clone().start();
    let t0 = Instant::now();
    let interval = Duration::from_secs(12);
    for n in 1..=12 {
        let config = TelemetryConfig::builder()
            .first_report_in(Duration::from_secs(12))
            .interval(interval)
            .sample_every(Duration::from_secs(3600))
            .spread_reports(spread);
        start_scheduler(&addr, &storage, &format!("instance-{n}"), config);
        pass_in_steps(Duration::from_millis(50), MS).await;
    }
    // Six intervals past the first reports, in 10 ms steps so each report's time is exact to
    // within a step.
    pass_in_steps(Duration::from_secs(12 + 6 * 12), Duration::from_millis(10)).await;
    let mut slots = [0usize; 6];
    for n in 1..=12 {
        let times = kept.times(&format!("instance-{n}"));
        assert!(times.len() >= 6, "instance-{n}: {}", times.len());
        for at in &times[1..] {
            let phase = (*at - t0).as_secs_f64() % interval.as_secs_f64();
            slots[(phase / 2.0) as usize] += 1;
        }
    }
    slots
}

#[actix_rt::test]
async fn a_fleet_started_in_the_same_second_reports_at_different_moments() {
    pause();
    let slots = fleet_slots(true).await;
    let total: usize = slots.iter().sum();
    eprintln!("steady-state reports per 2 s slot of the 12 s interval, spread: {slots:?}");
    let fullest = *slots.iter().max().unwrap();
    assert!(
        fullest * 2 <= total,
        "no 2 s slot holds more than half of the reports: {slots:?}"
    );

    // Without spreading, today's behaviour: all of them in the same slot.
    let unspread = fleet_slots(false).await;
    eprintln!("the same without spreading: {unspread:?}");
    assert_eq!(
        *unspread.iter().max().unwrap(),
        unspread.iter().sum::<usize>()
    );
}

#[test]
fn spreading_is_on_by_default_and_can_be_turned_off() {
    let default = TelemetryConfig::builder().build().unwrap();
    assert!(default.spread_reports());
    let off = TelemetryConfig::builder()
        .spread_reports(false)
        .build()
        .unwrap();
    assert!(!off.spread_reports());
    for value in ["off", "0", "false", "NO"] {
        let config = TelemetryConfig::builder()
            .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_SPREAD", value)]))
            .unwrap()
            .build()
            .unwrap();
        assert!(!config.spread_reports(), "{value}");
    }
    let on = TelemetryConfig::builder()
        .spread_reports(false)
        .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_SPREAD", "on")]))
        .unwrap()
        .build()
        .unwrap();
    assert!(on.spread_reports(), "the environment wins");
    let error = TelemetryConfig::builder()
        .with_env_from(env_of(&[("ELECTRIC_TELEMETRY_SPREAD", "sometimes")]))
        .unwrap_err();
    assert_eq!(error.setting, "ELECTRIC_TELEMETRY_SPREAD");
    assert!(error.to_string().contains("off"), "{error}");
}
