//! What the receiver stores of a report: its canonical compact JSON, whatever the sender's
//! spelling, so that padding costs the database nothing.

mod common;

use common::{backends, client, post_with, seed, start, SEED};

#[actix_rt::test]
async fn a_report_padded_to_64_kib_is_stored_compact() {
    let compact = serde_json::to_string(&seed()).unwrap();
    // The seed pretty-printed and padded with spaces up to the 64 KiB body limit.
    let limit = 64 * 1024;
    let mut padded = serde_json::to_string_pretty(&seed()).unwrap();
    padded.push_str(&" ".repeat(limit - padded.len()));
    assert_eq!(padded.len(), limit);
    for b in backends("stored_compact").await {
        let running = start(&b.db).await;
        let http = client();
        let answer = post_with(
            &http,
            &running,
            padded.clone().into_bytes(),
            Some("application/json"),
            &[],
        )
        .await;
        assert_eq!(answer.status, 201, "{}: {answer:?}", b.name);
        let id = seed()["report_id"].as_str().unwrap().to_owned();
        let stored = running.store().raw_body(&id).await.unwrap().unwrap();
        eprintln!(
            "{}: a {} byte body stored as {} bytes",
            b.name,
            padded.len(),
            stored.len()
        );
        assert_eq!(stored, compact, "{}: canonical compact JSON", b.name);
        assert!(stored.len() < SEED.len(), "{}", b.name);
        running.stop().await;
        b.finish().await;
    }
}

/// Every row of the rollup tables, in key order, as text: what two ways of storing the same
/// reports must agree on.
async fn rollups(store: &checkpoint::Store) -> Vec<String> {
    use sqlx::{Column, Row};
    let pool = store.pool().clone();
    store
        .run(|_| async move {
            let mut out = Vec::new();
            for (table, order) in [
                ("clusters", "cluster_uuid"),
                ("instances", "cluster_uuid, instance_id"),
                ("cluster_days", "cluster_uuid, day"),
                ("days", "day"),
            ] {
                let rows = sqlx::query(&format!("SELECT * FROM {table} ORDER BY {order}"))
                    .fetch_all(&pool)
                    .await?;
                for row in rows {
                    let mut line = format!("{table}:");
                    for (k, col) in row.columns().iter().enumerate() {
                        let v = match row.try_get::<Option<i64>, _>(k) {
                            Ok(v) => format!("{v:?}"),
                            Err(_) => format!("{:?}", row.try_get::<Option<String>, _>(k)?),
                        };
                        line.push_str(&format!(" {}={v}", col.name()));
                    }
                    out.push(line);
                }
            }
            Ok(out)
        })
        .await
        .unwrap()
}

/// A batch is written with a few multi-row statements per table, not one per report. What it
/// leaves behind must be exactly what the same reports leave when each is its own batch, in
/// the order of their windows: one batch of 300 reports (every chunk size used) with several
/// reports of one instance out of order, gaps, a day boundary, versions that change, a null
/// `pg_version`, a report twice in the batch and one stored before. (That the one-report
/// figures are right is what `fleet.rs` and `drift.rs` check against independent oracles.)
#[actix_rt::test]
async fn one_batch_leaves_exactly_what_one_report_at_a_time_leaves() {
    use checkpoint::store::Outcome;
    use chrono::{Duration as Days, TimeZone, Utc};
    let validator = checkpoint::Validator::new().unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 2, 20, 0, 0).unwrap();
    let mut bodies = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for c in 0..40 {
        let cluster = format!("{c:08x}-0000-4000-8000-000000000000");
        for inst in 0..(1 + c % 3) {
            let mut at = start + Days::minutes(rng.i64(0..600));
            for k in 0..(1 + rng.usize(0..6)) {
                let mut v = seed();
                v["report_id"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
                let env = &mut v["data"]["environment"];
                env["electric_cluster_uuid"] = serde_json::json!(cluster);
                env["electric_instance_id"] = serde_json::json!(format!("i{c}-{inst}"));
                env["pg_version"] = if rng.bool() {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(format!("1{}.0", rng.u8(4..8)))
                };
                v["data"]["electric_version"] = serde_json::json!(format!("1.{k}.0"));
                // Mostly the previous window's end; sometimes a gap (a missed window).
                let prev = if k > 0 && rng.u8(0..5) > 0 {
                    at
                } else {
                    at - Days::minutes(7)
                };
                at += Days::minutes(rng.i64(60..400));
                v["timestamp"] = serde_json::json!(at.to_rfc3339());
                v["last_reported"] = serde_json::json!(prev.to_rfc3339());
                v["data"]["usage"]["operations_from_pg"] = serde_json::json!(rng.u64(0..1000));
                v["dropped_events"] = serde_json::json!(rng.u8(0..2));
                bodies.push(serde_json::to_vec(&v).unwrap());
            }
        }
    }
    bodies.truncate(299);
    assert!(bodies.len() > 64 + 16 + 4 + 1, "{}", bodies.len());
    let twice = bodies[10].clone();
    bodies.push(twice);
    let accepted: Vec<_> = bodies.iter().map(|b| validator.check(b).unwrap()).collect();
    // Shuffled: the batch does not arrive in the order of its windows.
    let mut batch: Vec<&checkpoint::validate::Accepted> = accepted.iter().collect();
    rng.shuffle(&mut batch);
    let mut one_by_one = batch.clone();
    one_by_one.sort_by_key(|r| r.timestamp_us);
    let before = &accepted[20];

    let twins = backends("batched")
        .await
        .into_iter()
        .zip(backends("single").await);
    for (b, other) in twins {
        let batched = checkpoint::Store::open(&b.db, 2).await.unwrap();
        let single = checkpoint::Store::open(&other.db, 2).await.unwrap();
        for s in [&batched, &single] {
            s.ingest_batch(&[before], 1).await.unwrap();
        }
        let outcomes = batched.ingest_batch(&batch, 2).await.unwrap();
        let mut expected = Vec::new();
        for r in &one_by_one {
            let o = single.ingest_batch(&[r], 2).await.unwrap()[0];
            expected.push((r.report_id.clone(), o));
        }
        let mut got: Vec<_> = batch
            .iter()
            .zip(&outcomes)
            .map(|(r, o)| (r.report_id.clone(), *o))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        // Same outcomes: the copy and the report stored before are duplicates either way.
        assert_eq!(got, expected, "{}", b.name);
        let duplicates = got.iter().filter(|(_, o)| *o == Outcome::Duplicate).count();
        assert_eq!(duplicates, 2, "{}", b.name);
        let (a, s) = (rollups(&batched).await, rollups(&single).await);
        assert!(a.len() > 100, "{}: {} rows", b.name, a.len());
        for (x, y) in a.iter().zip(&s) {
            assert_eq!(x, y, "{}", b.name);
        }
        assert_eq!(a.len(), s.len(), "{}", b.name);
        drop((batched, single));
        b.finish().await;
        other.finish().await;
    }
}

/// The schema comes from frozen SQL files, not from the counter list: every counter must have
/// its columns in the rollups (a counter added without a migration fails here); a database
/// refuses to start when a migration it applied has changed, or when a newer receiver
/// migrated it further than this one knows; a database from before checksums gets them.
#[actix_rt::test]
async fn migrations_are_frozen_files_checked_at_every_start() {
    use sqlx::Row;
    let sql = |store: &checkpoint::Store, q: String| {
        let pool = store.pool().clone();
        let store = store.clone();
        async move {
            store
                .run(move |_| async move { Ok(sqlx::query(&q).execute(&pool).await?) })
                .await
        }
    };
    for b in backends("migrations").await {
        let store = checkpoint::Store::open(&b.db, 1).await.unwrap();
        let rolled: Vec<&str> = checkpoint::COUNTERS
            .iter()
            .copied()
            .chain([
                "dropped_events",
                "dropped_reports",
                "missed_windows",
                "recovered",
                "after_unclean_stop",
                "clock_skewed",
            ])
            .collect();
        for table in ["days", "cluster_days"] {
            sql(
                &store,
                format!("SELECT {} FROM {table} WHERE 1 = 0", rolled.join(", ")),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {table} lacks a counter's column: {e}", b.name));
        }
        let pool = store.pool().clone();
        let sums: Vec<(i64, String)> = store
            .run(move |_| async move {
                let rows = sqlx::query(
                    "SELECT version, checksum FROM checkpoint_migration_sums ORDER BY version",
                )
                .fetch_all(&pool)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
                    .collect())
            })
            .await
            .unwrap();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .count();
        assert_eq!(sums.len(), files, "{}: {sums:?}", b.name);

        // A database from before checksums: they are recorded at the next start.
        sql(&store, "DELETE FROM checkpoint_migration_sums".into())
            .await
            .unwrap();
        drop(store);
        let store = checkpoint::Store::open(&b.db, 1).await.unwrap();
        let pool = store.pool().clone();
        let n: i64 = store
            .run(move |_| async move {
                Ok(
                    sqlx::query("SELECT COUNT(*) FROM checkpoint_migration_sums")
                        .fetch_one(&pool)
                        .await?
                        .get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(n as usize, files, "{}", b.name);

        // A migration that changed after this database applied it.
        sql(
            &store,
            "UPDATE checkpoint_migration_sums SET checksum = '0000' WHERE version = 1".into(),
        )
        .await
        .unwrap();
        drop(store);
        let err = checkpoint::Store::open(&b.db, 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("0001_reports_and_rollups.sql") && err.contains("frozen"),
            "{}: {err}",
            b.name
        );

        // Migrated further by a newer receiver.
        let store = {
            // Mend the sum through a plain connection (the store refuses to open).
            let (_, url) = checkpoint::store::db_url(&b.db);
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            for q in [
                "DELETE FROM checkpoint_migration_sums WHERE version = 1",
                "INSERT INTO checkpoint_migrations (version, applied_at) VALUES (99, 0)",
            ] {
                sqlx::query(q).execute(&mut conn).await.unwrap();
            }
            checkpoint::Store::open(&b.db, 1).await
        };
        let err = store.unwrap_err().to_string();
        assert!(
            err.contains("newer receiver") && err.contains("99"),
            "{}: {err}",
            b.name
        );
        b.finish().await;
    }
}

/// The exports: every stored report of the days asked, once, as stored, over several pages,
/// by HTTP and by `checkpoint export`; the CSVs one row per day or period with the JSON's
/// figures; bad parameters refused by name.
#[actix_rt::test]
async fn the_exports_hold_what_is_stored_and_what_the_answers_say() {
    use chrono::{Duration as Days, TimeZone, Utc};
    let validator = checkpoint::Validator::new().unwrap();
    let start = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    let accepted: Vec<_> = (0..1203)
        .map(|i| {
            let mut v = seed();
            v["report_id"] = serde_json::json!(uuid::Uuid::new_v4().to_string());
            v["data"]["environment"]["electric_cluster_uuid"] =
                serde_json::json!(format!("{:08x}-0000-4000-8000-000000000000", i % 37));
            let at = start + Days::minutes(i * 3);
            v["timestamp"] = serde_json::json!(at.to_rfc3339());
            v["last_reported"] = serde_json::json!((at - Days::hours(4)).to_rfc3339());
            v["data"]["usage"]["operations_from_pg"] = serde_json::json!(i);
            validator.check(&serde_json::to_vec(&v).unwrap()).unwrap()
        })
        .collect();
    for b in backends("exports").await {
        let running = start_at(&b.db).await;
        let refs: Vec<&checkpoint::validate::Accepted> = accepted.iter().collect();
        // Received now: the raw retention keeps them.
        for chunk in refs.chunks(400) {
            running
                .store()
                .ingest_batch(chunk, Utc::now().timestamp())
                .await
                .unwrap();
        }
        let base = format!("http://{}", running.addr());
        let http = client();
        let mut res = http
            .get(format!(
                "{base}/api/reports.ndjson?from=2026-11-01&until=2026-11-05"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{}", b.name);
        let body = res.body().limit(64 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            accepted.len(),
            "{}: every report, once",
            b.name
        );
        let mut want: Vec<(String, String)> = accepted
            .iter()
            .map(|a| (a.day.clone(), a.report_id.clone()))
            .collect();
        want.sort();
        let got: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let day = v["timestamp"].as_str().unwrap()[..10].to_owned();
                (day, v["report_id"].as_str().unwrap().to_owned())
            })
            .collect();
        assert_eq!(got, want, "{}: in the order of day and report_id", b.name);
        let one = running.store().raw_body(&want[7].1).await.unwrap().unwrap();
        assert_eq!(lines[7], one, "{}: as stored", b.name);
        // One day only.
        let mut res = http
            .get(format!(
                "{base}/api/reports.ndjson?from=2026-11-03&until=2026-11-03"
            ))
            .send()
            .await
            .unwrap();
        let day3 = res.body().limit(64 << 20).await.unwrap();
        let n3 = accepted.iter().filter(|a| a.day == "2026-11-03").count();
        assert_eq!(String::from_utf8_lossy(&day3).lines().count(), n3);
        // The same by the command line.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_checkpoint"))
            .args([
                "export",
                "--db",
                &b.db,
                "--from",
                "2026-11-01",
                "--until",
                "2026-11-05",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), text, "{}", b.name);

        // The CSVs say what the JSON says.
        let o = common::overview(&http, &running, 5, "2026-11-05").await;
        let mut res = http
            .get(format!("{base}/api/per_day.csv?days=5&until=2026-11-05"))
            .send()
            .await
            .unwrap();
        assert!(res
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let csv = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 1 + 5, "{}: a header and a row per day", b.name);
        let col = |name: &str| rows[0].iter().position(|h| *h == name).unwrap();
        for (row, day) in rows[1..].iter().zip(&o.per_day) {
            assert_eq!(row[col("day")], format!("\"{}\"", day.day));
            assert_eq!(row[col("applications")], day.applications.to_string());
            assert_eq!(
                row[col("operations_from_pg")],
                day.totals["operations_from_pg"].to_string()
            );
            assert_eq!(
                row[col("completeness_reports")],
                day.completeness.reports.to_string()
            );
        }
        let mut res = http
            .get(format!(
                "{base}/api/activity.csv?period=day&periods=4&until=2026-11-05"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let csv = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        assert_eq!(csv.lines().count(), 1 + 4, "{}", b.name);
        assert!(csv.lines().all(|l| !l.starts_with(['=', '+', '-', '@'])));
        for (query, named) in [
            (
                "reports.ndjson?from=2026-11-05&until=2026-11-01",
                "from must not be after until",
            ),
            ("reports.ndjson?from=yesterday", "from must be a date like"),
            ("per_day.csv?days=0", "days must be a whole number"),
            (
                "activity.csv?period=fortnight",
                "period must be day, week, month or quarter",
            ),
        ] {
            let mut res = http
                .get(format!("{base}/api/{query}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 400, "{query}");
            let body: serde_json::Value = res.json().await.unwrap();
            assert!(
                body["error"].as_str().unwrap().contains(named),
                "{query}: {body}"
            );
        }
        running.stop().await;
        b.finish().await;
    }
}

async fn start_at(db: &str) -> checkpoint::Running {
    common::start_with(db, |c| {
        c.retention = std::time::Duration::from_secs(10 * 365 * 86_400)
    })
    .await
}

#[test]
fn a_csv_cell_never_starts_a_formula() {
    use checkpoint::export::cell;
    assert_eq!(cell("2026-11-05"), "\"2026-11-05\"");
    assert_eq!(cell("=1+1"), "\"'=1+1\"");
    assert_eq!(cell("+SUM(A1)"), "\"'+SUM(A1)\"");
    assert_eq!(cell("-3"), "\"'-3\"");
    assert_eq!(cell("@x"), "\"'@x\"");
    assert_eq!(cell("say \"hi\", ok"), "\"say \"\"hi\"\", ok\"");
}
