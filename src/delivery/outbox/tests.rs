//! The outbox's own tests: bounds, counts across restarts, recovery files, take-over.
use std::fs;

use super::layout::{parse_count, CARRY_FILE, KEPT_CORRUPT, RECOVERY_FILE, RUNNING_FILE};
use super::CountMark;
use super::*;
use crate::delivery::instance_dir;

fn report() -> Report {
    let mut r: Report =
        serde_json::from_str(include_str!("../../../tests/fixtures/seed_report.json"))
            .expect("fixture parses");
    r.report_id = uuid::Uuid::new_v4();
    r
}

const BOUNDS: Bounds = Bounds {
    max_reports: 4,
    max_bytes: 1 << 20,
};

#[test]
fn a_drop_count_with_no_report_to_carry_it_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    outbox.load();
    outbox.push(report(), None);
    let seq = outbox.front().unwrap().seq;
    outbox.drop_seq(seq);
    assert_eq!((outbox.len(), outbox.carry()), (0, 1));

    let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    drop(outbox);
    assert_eq!(restarted.load(), Loaded::default());
    assert_eq!(restarted.carry(), 1);
    restarted.push(report(), None);
    assert_eq!(restarted.front().unwrap().report.dropped_reports, 1);
    assert_eq!(restarted.carry(), 0);
    let count = fs::read(dir.path().join(CARRY_FILE)).unwrap();
    assert_eq!(
        parse_count(&count),
        Some((0, None)),
        "the report on disk carries it now"
    );
}

#[test]
fn the_report_on_the_wire_is_never_the_one_dropped() {
    let mut outbox = Outbox::new(None, BOUNDS);
    outbox.push(report(), None);
    let on_wire = outbox.front().unwrap().seq;
    for _ in 0..10 {
        outbox.push(report(), Some(on_wire));
    }
    assert_eq!(outbox.len(), 4);
    assert_eq!(outbox.front().unwrap().seq, on_wire);
    let carried: u64 = outbox.queue.iter().map(|p| p.report.dropped_reports).sum();
    assert_eq!(carried, 7, "11 queued, 4 kept, 7 counted");
}

#[test]
fn unreadable_files_are_counted_and_only_the_newest_kept() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..12 {
        fs::write(dir.path().join(format!("{i:020}-x.json")), "not json").unwrap();
    }
    let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    assert_eq!(outbox.load().corrupt, 12);
    assert_eq!(
        outbox.carry(),
        12,
        "each unreadable report is a counted loss"
    );
    let kept: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "corrupt"))
        .collect();
    assert_eq!(kept.len(), KEPT_CORRUPT);
    drop(outbox);
    // The count survives a restart until a report carries it.
    let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    restarted.load();
    assert_eq!(restarted.carry(), 12);
}

#[test]
fn sequence_numbers_continue_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    outbox.load();
    outbox.push(report(), None);
    outbox.push(report(), None);
    drop(outbox);
    let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    assert_eq!(restarted.load().reports, 2);
    restarted.push(report(), None);
    let seqs: Vec<u64> = restarted.queue.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, [0, 1, 2]);
}

#[test]
fn a_recovery_file_of_a_window_that_already_ended_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    outbox.load();
    let cp = dir.path().join(RECOVERY_FILE);
    let mut ended = report();
    ended.last_reported = "2026-11-25T10:00:00.000000Z".into();
    ended.timestamp = "2026-11-25T11:00:00.000000Z".into();
    // A recovery file of the window, then its report: the report supersedes it.
    outbox.keep_window(&ended);
    assert!(cp.exists());
    outbox.push(ended.clone(), None);
    assert!(!cp.exists(), "the window is in the report now");
    // A recovery file taken before that report but arriving after it: stale.
    outbox.keep_window(&ended);
    assert!(
        !cp.exists(),
        "a recovery file of an ended window is not kept"
    );
    let mut current = report();
    current.last_reported = ended.timestamp.clone();
    outbox.keep_window(&current);
    assert!(cp.exists(), "the window in progress is kept");
    outbox.close();
    assert!(!cp.exists() && !dir.path().join(RUNNING_FILE).exists());
    outbox.keep_window(&current);
    assert!(!cp.exists(), "nothing after the final report");
}

#[test]
fn a_second_instance_never_touches_a_live_ones_files_and_takes_over_a_dead_ones() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("outbox");
    let mut first = Outbox::new(Some(base.clone()), BOUNDS);
    first.load();
    first.push(report(), None);
    // The first instance is in the middle of writing another report.
    let writing = base.join("00000000000000000001-y.tmp-999999-0");
    fs::write(&writing, "half").unwrap();

    let mut second = Outbox::new(Some(base.clone()), BOUNDS);
    assert_eq!(
        second.load(),
        Loaded::default(),
        "nothing of the first's is taken"
    );
    assert_eq!(second.dir(), Some(instance_dir::slot(&base, 1).as_path()));
    assert!(
        writing.exists(),
        "the live writer's temporary file is left alone"
    );
    second.push(report(), None);

    // The first dies; a third start takes its directory over, and its stale temp file.
    drop(first);
    let mut third = Outbox::new(Some(base.clone()), BOUNDS);
    assert_eq!(third.load().reports, 1, "the dead first's report");
    assert!(
        !writing.exists(),
        "a dead writer's temporary file is cleaned"
    );
    assert_eq!(second.len(), 1, "the live second keeps its own");
}

/// A drop a kill cut short, between writing the report that took the count and removing the
/// dropped one: the next start removes the dropped one without counting it again.
#[test]
fn a_dropped_report_whose_count_is_carried_is_not_counted_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    outbox.load();
    for _ in 0..3 {
        outbox.push(report(), None);
    }
    let gone = outbox.queue[0].clone();
    let gone_file = report_file(dir.path(), gone.seq, &gone.report);
    let kept = fs::read(&gone_file).unwrap();
    outbox.drop_seq(gone.seq);
    assert_eq!(outbox.queue[0].report.dropped_reports, 1);
    // As if killed before the removal.
    fs::write(&gone_file, kept).unwrap();
    drop(outbox);

    let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    assert_eq!(restarted.load().reports, 2);
    assert!(!gone_file.exists(), "the removal is finished");
    let counted: u64 = restarted
        .queue
        .iter()
        .map(|p| 1 + p.report.dropped_reports)
        .sum();
    assert_eq!(counted + restarted.carry(), 3, "three reports, each once");
}

/// A drop with no report after it to carry the count: the count file takes it, naming the
/// dropped report until its file is gone.
#[test]
fn a_count_file_that_took_a_drop_finishes_its_removal_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    outbox.load();
    outbox.push(report(), None);
    let gone = outbox.queue[0].clone();
    let gone_file = report_file(dir.path(), gone.seq, &gone.report);
    let kept = fs::read(&gone_file).unwrap();
    // The count as it stood between taking the drop and removing the file.
    outbox.carry = 1;
    outbox.mark = Some(CountMark::Absorbs(gone.report.report_id));
    outbox.sync_counter();
    drop(outbox);
    fs::write(&gone_file, kept).unwrap();

    let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
    assert_eq!(restarted.load().reports, 0);
    assert_eq!(restarted.carry(), 1, "counted once");
    assert!(!gone_file.exists());
}

/// A count moving onto a new report, killed on either side of the report's write: the count
/// is in exactly one place at the next start.
#[test]
fn a_count_handed_to_a_report_is_counted_once_whichever_side_of_its_write_a_kill_lands() {
    for written in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        outbox.load();
        outbox.carry = 5;
        let next = report();
        // The count file as `push` leaves it just before writing the report.
        outbox.mark = Some(CountMark::HandedTo(next.report_id));
        outbox.sync_counter();
        if written {
            let mut carried = next.clone();
            carried.dropped_reports = 5;
            let path = report_file(dir.path(), 0, &carried);
            fs::write(path, serde_json::to_vec(&carried).unwrap()).unwrap();
        }
        drop(outbox);

        let mut restarted = Outbox::new(Some(dir.path().to_owned()), BOUNDS);
        let loaded = restarted.load();
        let on_disk: u64 = restarted
            .queue
            .iter()
            .map(|p| 1 + p.report.dropped_reports)
            .sum();
        assert_eq!(loaded.reports, usize::from(written));
        assert_eq!(
            on_disk + restarted.carry(),
            5 + u64::from(written),
            "written: {written}"
        );
    }
}
