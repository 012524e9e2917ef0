//! A generated fleet (200 clusters × 1–5 instances over 30 days, with late starters, early
//! leavers, restarts (half of them keeping a fixed instance id), lost reports, silent
//! stretches of days, retried duplicates and version upgrades; a seeded RNG)
//! is sent over HTTP, and the overview must equal what this test computes on its own from
//! the reports it sent, for several windows, on SQLite and (when configured) Postgres.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use checkpoint::activity::{Activity, Cohort, PeriodFigures, Retention, Spread, Volume};
use checkpoint::overview::{Bucket, Completeness, Day, Previous, Share};
use checkpoint::{Overview, COUNTERS};
use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use common::{backends, client, overview, seed, start_with};
use serde_json::{json, Value};

const DAYS: i64 = 30;

/// One report as sent, and what the oracle needs of it.
#[derive(Clone)]
struct Sent {
    /// When it is sent (sort key), microseconds.
    at: i64,
    report: Value,
    cluster: String,
    instance: String,
    day: String,
    timestamp: DateTime<Utc>,
    last_reported: DateTime<Utc>,
    /// Seconds since the sending process started (`data.resources.uptime`).
    uptime: i64,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn generate(rng: &mut fastrand::Rng) -> Vec<Sent> {
    let origin = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let end = origin + Span::days(DAYS);
    let versions = ["1.0.0", "1.1.0", "1.2.3", "0.9.1-rc1"];
    let pgs = ["14.9", "15.4", "16.1", "17beta2"];
    let arches = [
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "aarch64-apple-darwin",
    ];
    let oses = [("unix", "linux"), ("unix", "macos"), ("windows", "windows")];
    let mut sent = Vec::new();
    for _ in 0..200 {
        let cluster = uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
            .into_uuid()
            .to_string();
        // Most clusters are there from the start; some arrive later, some leave early.
        let start_day = if rng.u8(..100) < 60 {
            0
        } else {
            rng.i64(1..DAYS)
        };
        let stop = if rng.u8(..100) < 80 {
            end
        } else {
            origin + Span::days(rng.i64(start_day..DAYS)) + Span::hours(rng.i64(1..24))
        };
        let interval = Span::hours(if rng.u8(..100) < 5 { 12 } else { 24 });
        let mut version = versions[rng.usize(..versions.len())];
        let upgrade_at = origin + Span::days(rng.i64(0..DAYS * 2));
        let pg = pgs[rng.usize(..pgs.len())];
        let arch = arches[rng.usize(..arches.len())];
        let (family, name) = oses[rng.usize(..oses.len())];
        // A tenth of the clusters go silent for a few days (nothing arrives), then resume.
        let silent = (rng.u8(..100) < 10).then(|| {
            let from = origin + Span::days(rng.i64(2..DAYS - 6));
            (from, from + Span::days(rng.i64(2..6)))
        });
        // 1 to 5 instances, most clusters small (it keeps the test's run time down).
        for _ in 0..[1, 1, 1, 2, 2, 3, 4, 5][rng.usize(..8)] {
            let mut instance = format!("inst-{}", rng.u64(..));
            let mut began = origin + Span::days(start_day) + Span::minutes(rng.i64(0..24 * 60));
            let mut window_start = began;
            let mut first = true;
            loop {
                let ts = window_start + interval;
                if ts >= stop {
                    break;
                }
                if ts >= upgrade_at {
                    version = "2.0.0";
                }
                let mut r = seed();
                r["report_id"] =
                    json!(uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
                        .into_uuid()
                        .to_string());
                r["timestamp"] = json!(rfc3339(ts));
                r["last_reported"] = json!(rfc3339(window_start));
                r["dropped_events"] = json!(if rng.u8(..100) < 5 {
                    rng.u64(1..100)
                } else {
                    0
                });
                r["dropped_reports"] = json!(if rng.u8(..100) < 3 { rng.u64(1..4) } else { 0 });
                let env = &mut r["data"]["environment"];
                env["electric_cluster_uuid"] = json!(cluster);
                env["electric_instance_id"] = json!(instance);
                env["arch"] = json!(arch);
                env["os"] = json!({"family": family, "name": name});
                env["pg_version"] = if first && rng.u8(..100) < 30 {
                    Value::Null
                } else {
                    json!(pg)
                };
                r["data"]["electric_version"] = json!(version);
                r["resources"] = r["data"]["resources"].take();
                r["data"]["resources"] = r["resources"].take();
                r.as_object_mut().unwrap().remove("resources");
                let uptime = (ts - began).num_seconds();
                r["data"]["resources"]["uptime"] = json!(uptime);
                for c in COUNTERS {
                    r["data"]["usage"][c] = json!(rng.u64(0..50_000));
                }
                let lost = (!first && rng.u8(..100) < 3)
                    || silent.is_some_and(|(from, to)| ts >= from && ts < to);
                let entry = |at: i64, report: Value| Sent {
                    at,
                    report,
                    cluster: cluster.clone(),
                    instance: instance.clone(),
                    day: ts.format("%Y-%m-%d").to_string(),
                    timestamp: ts,
                    last_reported: window_start,
                    uptime,
                };
                if !lost {
                    if rng.u8(..100) < 4 {
                        // A retry of the same report, sent a while later.
                        sent.push(entry(
                            (ts + Span::minutes(rng.i64(1..120))).timestamp_micros(),
                            r.clone(),
                        ));
                    }
                    sent.push(entry(ts.timestamp_micros(), r));
                }
                first = false;
                window_start = ts;
                if rng.u8(..100) < 2 {
                    // A restart: its first window begins at its start. Half keep their id
                    // (a fixed ELECTRIC_INSTANCE_ID): their uptime tells the gap is no loss.
                    if rng.bool() {
                        instance = format!("inst-{}", rng.u64(..));
                    }
                    began = ts + Span::minutes(rng.i64(1..120));
                    window_start = began;
                    first = true;
                }
            }
            let _ = began;
        }
    }
    // One-shot clusters (a CI job, a trial): one or two reports on one day, or on two days.
    for k in 0..24 {
        let cluster = uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
            .into_uuid()
            .to_string();
        let began = origin + Span::days(rng.i64(0..DAYS)) + Span::minutes(rng.i64(0..600));
        let mut stamps = vec![began + Span::hours(1)];
        if k % 3 == 1 {
            stamps.push(began + Span::hours(5));
        } else if k % 3 == 2 {
            stamps.push(began + Span::hours(25));
        }
        let instance = format!("inst-{}", rng.u64(..));
        let mut window_start = began;
        for ts in stamps {
            if ts >= end {
                break;
            }
            let mut r = seed();
            r["report_id"] = json!(uuid::Builder::from_random_bytes(rng.u128(..).to_le_bytes())
                .into_uuid()
                .to_string());
            r["timestamp"] = json!(rfc3339(ts));
            r["last_reported"] = json!(rfc3339(window_start));
            r["dropped_events"] = json!(0);
            r["dropped_reports"] = json!(0);
            let env = &mut r["data"]["environment"];
            env["electric_cluster_uuid"] = json!(cluster);
            env["electric_instance_id"] = json!(instance);
            r["data"]["electric_version"] = json!("1.2.3");
            let uptime = (ts - began).num_seconds();
            r["data"]["resources"]["uptime"] = json!(uptime);
            for c in COUNTERS {
                r["data"]["usage"][c] = json!(rng.u64(0..50_000));
            }
            sent.push(Sent {
                at: ts.timestamp_micros(),
                report: r,
                cluster: cluster.clone(),
                instance: instance.clone(),
                day: ts.format("%Y-%m-%d").to_string(),
                timestamp: ts,
                last_reported: window_start,
                uptime,
            });
            window_start = ts;
        }
    }
    sent.sort_by_key(|s| s.at);
    sent
}

/// The reports of the clusters active on at least `n` distinct days (over everything sent):
/// what `min_active_days=n` counts.
fn active_on(sent: &[Sent], n: usize) -> Vec<Sent> {
    let mut days: HashMap<&str, HashSet<&str>> = HashMap::new();
    for s in sent {
        days.entry(&s.cluster).or_default().insert(&s.day);
    }
    sent.iter()
        .filter(|s| days[s.cluster.as_str()].len() >= n)
        .cloned()
        .collect()
}

/// Refused duplicates are not kept per cluster: a filtered answer has the whole fleet's.
fn fleet_duplicates(got: &mut Completeness, fleet: &Completeness) {
    got.duplicates_refused = fleet.duplicates_refused;
}

/// A report's (timestamp, electric_version, os, arch).
type Attributes = (DateTime<Utc>, String, String, String);

/// The overview, computed from what was sent, by the documented definitions.
fn oracle(sent: &[Sent], days: u32, until: &str) -> Overview {
    let until_d = chrono::NaiveDate::parse_from_str(until, "%Y-%m-%d").unwrap();
    let from_d = until_d - chrono::Days::new(u64::from(days) - 1);
    let from = from_d.format("%Y-%m-%d").to_string();
    let in_window = |d: &str| d >= from.as_str() && d <= until;
    let mut seen = HashSet::new();
    let mut per_day: BTreeMap<String, Day> = BTreeMap::new();
    let mut day_clusters: HashMap<String, HashSet<String>> = HashMap::new();
    let mut day_instances: HashMap<String, HashSet<(String, String)>> = HashMap::new();
    let mut cluster_span: HashMap<String, (String, String)> = HashMap::new();
    let mut instance_span: HashMap<(String, String), (String, String)> = HashMap::new();
    let mut prev_ts: HashMap<(String, String), DateTime<Utc>> = HashMap::new();
    // (cluster, day) -> (timestamp, version, os, arch) of its latest report that day; its pg_version
    let mut latest: HashMap<(String, String), Attributes> = HashMap::new();
    let mut latest_pg: HashMap<(String, String), String> = HashMap::new();
    let empty = |d: &str| {
        let mut day = serde_json::from_value::<Day>(json!({
            "day": d, "applications": 0, "instances": 0, "new_applications": 0, "reports": 0,
            "totals": {}, "completeness": Completeness::default()
        }))
        .unwrap();
        for c in COUNTERS {
            day.totals.insert(c.to_owned(), 0);
        }
        day
    };
    for s in sent {
        let id = s.report["report_id"].as_str().unwrap().to_owned();
        let d = per_day
            .entry(s.day.clone())
            .or_insert_with(|| empty(&s.day));
        if !seen.insert(id) {
            d.completeness.duplicates_refused += 1;
            continue;
        }
        d.reports += 1;
        d.completeness.reports += 1;
        for c in COUNTERS {
            *d.totals.get_mut(c).unwrap() += s.report["data"]["usage"][c].as_u64().unwrap();
        }
        d.completeness.dropped_events += s.report["dropped_events"].as_u64().unwrap();
        d.completeness.dropped_reports += s.report["dropped_reports"].as_u64().unwrap();
        let key = (s.cluster.clone(), s.instance.clone());
        if let Some(p) = prev_ts.insert(key.clone(), s.timestamp) {
            // A gap in one process's run; a restart (uptime no longer than its window) is not.
            let window = (s.timestamp - s.last_reported).num_seconds();
            if p != s.last_reported && s.uptime > window {
                d.completeness.missed_windows += 1;
            }
        }
        let span = cluster_span
            .entry(s.cluster.clone())
            .or_insert((s.day.clone(), s.day.clone()));
        span.0 = span.0.clone().min(s.day.clone());
        span.1 = span.1.clone().max(s.day.clone());
        let span = instance_span
            .entry(key.clone())
            .or_insert((s.day.clone(), s.day.clone()));
        span.1 = span.1.clone().max(s.day.clone());
        day_clusters
            .entry(s.day.clone())
            .or_default()
            .insert(s.cluster.clone());
        day_instances.entry(s.day.clone()).or_default().insert(key);
        let env = &s.report["data"]["environment"];
        let attrs = (
            s.timestamp,
            s.report["data"]["electric_version"]
                .as_str()
                .unwrap()
                .to_owned(),
            format!(
                "{}/{}",
                env["os"]["family"].as_str().unwrap(),
                env["os"]["name"].as_str().unwrap()
            ),
            env["arch"].as_str().unwrap().to_owned(),
        );
        // The cluster's latest report of each day (the later one on a tie, in arrival order).
        let l = latest
            .entry((s.cluster.clone(), s.day.clone()))
            .or_insert(attrs.clone());
        if attrs.0 >= l.0 {
            *l = attrs;
        }
        // Each cluster has one pg_version (null in some first reports): known on a day when
        // any of its reports that day has it.
        if let Some(pg) = env["pg_version"].as_str() {
            latest_pg.insert((s.cluster.clone(), s.day.clone()), pg.to_owned());
        }
    }
    for (day, d) in per_day.iter_mut() {
        d.applications = day_clusters.get(day).map_or(0, |s| s.len() as u64);
        d.instances = day_instances.get(day).map_or(0, |s| s.len() as u64);
    }
    // New on a day: the cluster's first active day (over everything sent) is that day.
    for (c, span) in &cluster_span {
        let _ = c;
        if let Some(d) = per_day.get_mut(&span.0) {
            d.new_applications += 1;
        }
    }
    let active = |span: &(String, String)| span.1 >= from && span.0.as_str() <= until;
    // A cluster is active when one of its reports counts on a day of the window; its
    // attributes are those of its latest day there.
    let mut last_day_in_window: BTreeMap<&String, &String> = BTreeMap::new();
    for (day, cs) in &day_clusters {
        if in_window(day) {
            for c in cs {
                let e = last_day_in_window.entry(c).or_insert(day);
                if day > *e {
                    *e = day;
                }
            }
        }
    }
    let clusters: BTreeSet<&String> = last_day_in_window.keys().copied().collect();
    let at = |c: &String| (c.clone(), last_day_in_window[c].clone());
    let new_applications = clusters
        .iter()
        .filter(|c| in_window(&cluster_span[**c].0))
        .count() as u64;
    let mut per_cluster: BTreeMap<&String, u64> = BTreeMap::new();
    for ((c, _), span) in &instance_span {
        if active(span) {
            *per_cluster.entry(c).or_default() += 1;
        }
    }
    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
    for n in per_cluster.values() {
        *buckets.entry(*n).or_default() += 1;
    }
    let shares = |f: &dyn Fn(&String) -> String| {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for c in &clusters {
            *m.entry(f(c)).or_default() += 1;
        }
        let mut v: Vec<Share> = m
            .into_iter()
            .map(|(value, applications)| Share {
                value,
                applications,
            })
            .collect();
        v.sort_by(|a, b| {
            b.applications
                .cmp(&a.applications)
                .then_with(|| a.value.cmp(&b.value))
        });
        v
    };
    let mut days_list = Vec::new();
    let mut totals: BTreeMap<String, u64> = COUNTERS.iter().map(|c| ((*c).to_owned(), 0)).collect();
    let mut completeness = Completeness::default();
    for i in 0..u64::from(days) {
        let day = (from_d + chrono::Days::new(i))
            .format("%Y-%m-%d")
            .to_string();
        let d = per_day.get(&day).cloned().unwrap_or_else(|| empty(&day));
        for (k, v) in &d.totals {
            *totals.get_mut(k).unwrap() += v;
        }
        let c = &d.completeness;
        completeness.reports += c.reports;
        completeness.dropped_events += c.dropped_events;
        completeness.dropped_reports += c.dropped_reports;
        completeness.duplicates_refused += c.duplicates_refused;
        completeness.missed_windows += c.missed_windows;
        days_list.push(d);
    }
    Overview {
        days,
        from,
        until: until.to_owned(),
        applications: clusters.len() as u64,
        instances: per_cluster.values().sum(),
        peak_instances: days_list.iter().map(|d| d.instances).max().unwrap_or(0),
        new_applications,
        returning_applications: clusters.len() as u64 - new_applications,
        instances_per_application: buckets
            .into_iter()
            .map(|(instances, applications)| Bucket {
                instances,
                applications,
            })
            .collect(),
        by_electric_version: shares(&|c| latest[&at(c)].1.clone()),
        by_pg_version: shares(&|c| {
            latest_pg
                .get(&at(c))
                .cloned()
                .unwrap_or_else(|| "(unknown)".to_owned())
        }),
        by_os: shares(&|c| latest[&at(c)].2.clone()),
        by_arch: shares(&|c| latest[&at(c)].3.clone()),
        totals,
        completeness,
        per_day: days_list,
        notes: BTreeMap::new(),
        previous: None,
    }
}

/// [`oracle`] with the window of the same length just before as `previous`.
fn oracle_compared(sent: &[Sent], days: u32, until: &str) -> Overview {
    let mut o = oracle(sent, days, until);
    let until_d = chrono::NaiveDate::parse_from_str(until, "%Y-%m-%d").unwrap();
    let before = (until_d - chrono::Days::new(u64::from(days)))
        .format("%Y-%m-%d")
        .to_string();
    o.previous = Some(Box::new(Previous::of(&oracle(sent, days, &before))));
    o
}

/// `/api/activity` computed from what was sent: calendar periods (ISO weeks from Monday,
/// months), each with the overview of its days (by [`oracle`]) and its lifecycle and volume
/// per application, computed here from the reports.
fn activity_oracle(sent: &[Sent], period: &str, periods: usize, until: &str) -> Activity {
    use chrono::{Datelike, NaiveDate};
    let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let until = NaiveDate::parse_from_str(until, "%Y-%m-%d").unwrap();
    // (start, end) of the period holding `d`.
    let bounds = |d: NaiveDate| -> (NaiveDate, NaiveDate) {
        match period {
            "day" => (d, d),
            "week" => {
                let start = d - chrono::Days::new(d.weekday().num_days_from_monday().into());
                (start, start + chrono::Days::new(6))
            }
            "month" => {
                let start = NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap();
                let next = if d.month() == 12 {
                    NaiveDate::from_ymd_opt(d.year() + 1, 1, 1).unwrap()
                } else {
                    NaiveDate::from_ymd_opt(d.year(), d.month() + 1, 1).unwrap()
                };
                (start, next.pred_opt().unwrap())
            }
            _ => unreachable!(),
        }
    };
    let mut list = vec![bounds(until)];
    while list.len() < periods + 1 {
        let before = list[0].0.pred_opt().unwrap();
        list.insert(0, bounds(before));
    }
    // What each cluster did, from the reports stored (the first copy of each).
    let mut seen = HashSet::new();
    let mut first_day: HashMap<&str, &str> = HashMap::new();
    let mut by_day: Vec<(&str, &str, u64, u64)> = Vec::new();
    for s in sent {
        if !seen.insert(s.report["report_id"].as_str().unwrap()) {
            continue;
        }
        let e = first_day.entry(&s.cluster).or_insert(&s.day);
        if s.day.as_str() < *e {
            *e = &s.day;
        }
        let usage = &s.report["data"]["usage"];
        by_day.push((
            &s.cluster,
            &s.day,
            usage["operations_from_pg"].as_u64().unwrap(),
            usage["operations_sent_to_clients"].as_u64().unwrap(),
        ));
    }
    let volumes = |(start, end): (NaiveDate, NaiveDate)| {
        let (start, end) = (day(start), day(end));
        let mut v: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for (c, d, pg, sent) in &by_day {
            if **d >= *start && **d <= *end {
                let e = v.entry(c).or_default();
                e.0 += pg;
                e.1 += sent;
            }
        }
        v
    };
    let spread = |mut v: Vec<u64>| -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        v.sort();
        let n = v.len();
        let nearest = |p: f64| v[((p * n as f64).ceil() as usize).max(1) - 1];
        let total: u64 = v.iter().sum();
        let top: u64 = v.iter().rev().take(10).sum();
        Spread {
            median: nearest(0.5),
            p90: nearest(0.9),
            max: v[n - 1],
            top10_share: if total == 0 {
                0.0
            } else {
                top as f64 / total as f64
            },
        }
    };
    let mut out = Vec::new();
    for w in list.windows(2) {
        let (prev, now) = (volumes(w[0]), volumes(w[1]));
        let (start, end) = w[1];
        let o = oracle(sent, ((end - start).num_days() + 1) as u32, &day(end));
        let new = now
            .keys()
            .filter(|c| first_day[**c] >= day(start).as_str())
            .count() as u64;
        let returning = now.keys().filter(|c| prev.contains_key(*c)).count() as u64;
        out.push(PeriodFigures {
            start: day(start),
            end: day(end),
            partial: false,
            applications: now.len() as u64,
            new,
            returning,
            resurrected: now.len() as u64 - new - returning,
            dormant: prev.keys().filter(|c| !now.contains_key(*c)).count() as u64,
            instances: o.instances,
            peak_instances: o.peak_instances,
            totals: o.totals,
            completeness: o.completeness,
            by_electric_version: o.by_electric_version,
            volume_per_application: Volume {
                operations_from_pg: spread(now.values().map(|v| v.0).collect()),
                operations_sent_to_clients: spread(now.values().map(|v| v.1).collect()),
            },
        });
    }
    Activity {
        period: period.to_owned(),
        periods: out,
    }
}

/// `/api/retention?period=week` computed from what was sent: ISO-week cohorts by first active
/// day, and how many of each were active in each later week.
fn retention_oracle(sent: &[Sent], cohorts: usize, until: &str) -> Retention {
    use chrono::{Datelike, NaiveDate};
    let monday = |d: NaiveDate| d - chrono::Days::new(d.weekday().num_days_from_monday().into());
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let last = monday(date(until));
    let starts: Vec<NaiveDate> = (0..cohorts)
        .rev()
        .map(|k| last - chrono::Days::new(7 * k as u64))
        .collect();
    let mut first: HashMap<&str, NaiveDate> = HashMap::new();
    let mut weeks: HashSet<(&str, NaiveDate)> = HashSet::new();
    for s in sent {
        let d = date(&s.day);
        let e = first.entry(&s.cluster).or_insert(d);
        *e = (*e).min(d);
        weeks.insert((&s.cluster, monday(d)));
    }
    Retention {
        period: "week".to_owned(),
        cohorts: starts
            .iter()
            .map(|start| {
                let members: Vec<&str> = first
                    .iter()
                    .filter(|(_, f)| monday(**f) == *start && **f <= date(until))
                    .map(|(c, _)| *c)
                    .collect();
                Cohort {
                    cohort: start.format("%Y-%m-%d").to_string(),
                    size: members.len() as u64,
                    active: starts
                        .iter()
                        .filter(|later| *later >= start)
                        .map(|later| {
                            members
                                .iter()
                                .filter(|c| weeks.contains(&(**c, *later)))
                                .count() as u64
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

#[actix_rt::test]
async fn a_generated_fleet_gives_the_overview_computed_independently() {
    let sent = generate(&mut fastrand::Rng::with_seed(11));
    let unique: HashSet<&str> = sent
        .iter()
        .map(|s| s.report["report_id"].as_str().unwrap())
        .collect();
    let instances: HashSet<(&str, &str)> = sent
        .iter()
        .map(|s| (s.cluster.as_str(), s.instance.as_str()))
        .collect();
    eprintln!(
        "fleet: {} sends, {} distinct reports, {} instances",
        sent.len(),
        unique.len(),
        instances.len()
    );
    for b in backends("fleet").await {
        // Flood limits are not what this test is about.
        let running = start_with(&b.db, |c| c.cluster_burst = 100_000).await;
        let addr = running.addr();
        // 32 concurrent senders taking the reports in order. One instance's reports are at
        // least 8 h apart, hundreds of reports away in this order, so they are never in
        // flight together and arrive in order, as the reporter's outbox sends them.
        let bodies: std::rc::Rc<Vec<Vec<u8>>> = std::rc::Rc::new(
            sent.iter()
                .map(|s| serde_json::to_vec(&s.report).unwrap())
                .collect(),
        );
        let next = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let lanes: Vec<_> = (0..32)
            .map(|_| {
                let (bodies, next) = (bodies.clone(), next.clone());
                actix_rt::spawn(async move {
                    let http = client();
                    let mut statuses = Vec::new();
                    loop {
                        let i = next.get();
                        if i >= bodies.len() {
                            return statuses;
                        }
                        next.set(i + 1);
                        let res = http
                            .post(format!("http://{addr}/"))
                            .insert_header(("content-type", "application/json"))
                            .send_body(bodies[i].clone())
                            .await
                            .expect("POST");
                        statuses.push(res.status().as_u16());
                    }
                })
            })
            .collect();
        for lane in lanes {
            for status in lane.await.unwrap() {
                assert!(
                    status == 200 || status == 201,
                    "{}: status {status}",
                    b.name
                );
            }
        }
        let http = client();
        for (days, until) in [
            (30, "2026-01-30"),
            (10, "2026-01-20"),
            (1, "2026-01-15"),
            (45, "2026-02-10"),
        ] {
            let mut got = overview(&http, &running, days, until).await;
            assert!(got.notes.contains_key("distinct_clients"));
            got.notes.clear();
            let want = oracle_compared(&sent, days, until);
            let what = format!("{}: days={days} until={until}", b.name);
            assert_eq!(got.applications, want.applications, "{what}: applications");
            assert_eq!(got.instances, want.instances, "{what}: instances");
            assert_eq!(got.new_applications, want.new_applications, "{what}: new");
            assert_eq!(
                got.instances_per_application, want.instances_per_application,
                "{what}"
            );
            assert_eq!(got.by_electric_version, want.by_electric_version, "{what}");
            assert_eq!(got.by_pg_version, want.by_pg_version, "{what}");
            assert_eq!(got.by_os, want.by_os, "{what}");
            assert_eq!(got.by_arch, want.by_arch, "{what}");
            assert_eq!(got.totals, want.totals, "{what}: totals");
            assert_eq!(got.completeness, want.completeness, "{what}: completeness");
            for (g, w) in got.per_day.iter().zip(&want.per_day) {
                assert_eq!(g, w, "{what}: day {}", w.day);
            }
            assert_eq!(got, want, "{what}");
        }
        for (period, periods, until) in [
            ("week", 5, "2026-02-08"),
            ("month", 2, "2026-02-15"),
            ("day", 12, "2026-01-20"),
        ] {
            let url = format!(
                "http://{addr}/api/activity?period={period}&periods={periods}&until={until}"
            );
            // A fresh client each time: computing the oracle takes long enough for the
            // receiver to close an idle keep-alive connection.
            let mut res = client().get(url).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "{}", b.name);
            let got: Activity = res.json().limit(1 << 22).await.unwrap();
            let want = activity_oracle(&sent, period, periods, until);
            let what = format!("{}: {period} x{periods} until {until}", b.name);
            assert_eq!(got.periods.len(), periods, "{what}");
            for (g, w) in got.periods.iter().zip(&want.periods) {
                assert_eq!(
                    (g.applications, g.new, g.returning, g.resurrected, g.dormant),
                    (w.applications, w.new, w.returning, w.resurrected, w.dormant),
                    "{what}: lifecycle of {}",
                    w.start
                );
                assert_eq!(g, w, "{what}: {}", w.start);
            }
            assert_eq!(got, want, "{what}");
        }
        let mut res = client()
            .get(format!(
                "http://{addr}/api/retention?period=week&cohorts=5&until=2026-02-01"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{}", b.name);
        let got: Retention = res.json().await.unwrap();
        let want = retention_oracle(&sent, 5, "2026-02-01");
        assert_eq!(got, want, "{}: retention", b.name);
        assert!(want.cohorts.iter().all(|c| c.active[0] == c.size));
        assert!(want.cohorts[0].size > 50 && want.cohorts.iter().skip(1).any(|c| c.size > 0));
        // min_active_days: every answer counts only the clusters active on at least N
        // distinct days, as if the others had never reported (but for refused duplicates,
        // which are not kept per cluster).
        for n in [2usize, 3] {
            let kept = active_on(&sent, n);
            for (days, until) in [(30, "2026-01-30"), (10, "2026-01-20")] {
                let url = format!(
                    "http://{addr}/api/overview?days={days}&until={until}&min_active_days={n}"
                );
                let mut res = client().get(url).send().await.unwrap();
                assert_eq!(res.status().as_u16(), 200, "{}", b.name);
                let mut got: Overview = res.json().limit(16 << 20).await.unwrap();
                got.notes.clear();
                let fleet = oracle_compared(&sent, days, until);
                let mut want = oracle_compared(&kept, days, until);
                fleet_duplicates(&mut want.completeness, &fleet.completeness);
                for (d, f) in want.per_day.iter_mut().zip(&fleet.per_day) {
                    fleet_duplicates(&mut d.completeness, &f.completeness);
                }
                let (p, fp) = (
                    want.previous.as_mut().unwrap(),
                    fleet.previous.as_ref().unwrap(),
                );
                fleet_duplicates(&mut p.completeness, &fp.completeness);
                let what = format!("{}: days={days} until={until} min_active_days={n}", b.name);
                assert!(
                    want.applications < fleet.applications,
                    "{what}: the filter leaves clusters out"
                );
                for (g, w) in got.per_day.iter().zip(&want.per_day) {
                    assert_eq!(g, w, "{what}: day {}", w.day);
                }
                assert_eq!(got, want, "{what}");
            }
            let url = format!(
                "http://{addr}/api/activity?period=week&periods=5&until=2026-02-08&min_active_days={n}"
            );
            let mut res = client().get(url).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "{}", b.name);
            let got: Activity = res.json().limit(1 << 22).await.unwrap();
            let fleet = activity_oracle(&sent, "week", 5, "2026-02-08");
            let mut want = activity_oracle(&kept, "week", 5, "2026-02-08");
            for (w, f) in want.periods.iter_mut().zip(&fleet.periods) {
                fleet_duplicates(&mut w.completeness, &f.completeness);
            }
            assert_eq!(got, want, "{}: activity, min_active_days={n}", b.name);
            let url = format!(
                "http://{addr}/api/retention?period=week&cohorts=5&until=2026-02-01&min_active_days={n}"
            );
            let mut res = client().get(url).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "{}", b.name);
            let got: Retention = res.json().await.unwrap();
            let want = retention_oracle(&kept, 5, "2026-02-01");
            assert_eq!(got, want, "{}: retention, min_active_days={n}", b.name);
        }
        let days = activity_oracle(&sent, "day", 12, "2026-01-20");
        assert!(
            days.periods.iter().any(|p| p.resurrected > 0)
                && days.periods.iter().any(|p| p.dormant > 0),
            "the fleet has resurrected and dormant clusters"
        );
        let http = client();
        let all = overview(&http, &running, 30, "2026-01-30").await;
        assert!(all.completeness.missed_windows > 0, "the fleet has gaps");
        assert!(
            all.completeness.duplicates_refused > 0,
            "the fleet has duplicates"
        );
        assert!(all.new_applications > 0 && all.returning_applications == 0);
        let late = overview(&http, &running, 10, "2026-01-20").await;
        assert!(late.returning_applications > 0 && late.new_applications > 0);
        running.stop().await;
        b.finish().await;
    }
}
