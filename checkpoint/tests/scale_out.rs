//! Several receivers on one Postgres (the documented way to scale out): concurrent batches
//! touch the same rollup rows in every order, and must neither deadlock nor answer 503, and
//! every report is stored once. Runs only when `CHECKPOINT_TEST_POSTGRES_URL` is set (on SQLite
//! two receivers on one file are not a supported set-up); otherwise prints a note.

mod common;

use std::collections::HashSet;

use common::{backends, client, overview, seed, start_with};
use serde_json::json;

#[actix_rt::test]
async fn two_receivers_on_one_postgres_never_deadlock_and_store_each_report_once() {
    for b in backends("scale_out").await {
        if b.name != "postgres" {
            continue;
        }
        let tweak = |c: &mut checkpoint::ServerConfig| {
            c.cluster_burst = 100_000;
            c.workers = 2;
        };
        let one = start_with(&b.db, tweak).await;
        let two = start_with(&b.db, tweak).await;
        let addrs = [one.addr(), two.addr()];
        // 12 clusters, 2 instances each, every report on the seed's day: the batches of both
        // receivers update the same clusters, instances, cluster_days and days rows.
        let clusters: Vec<String> = (0..12).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let mut senders = Vec::new();
        for s in 0..16usize {
            let clusters = clusters.clone();
            senders.push(actix_rt::spawn(async move {
                let http = client();
                let mut rng = fastrand::Rng::with_seed(s as u64);
                let mut answers = Vec::new();
                for n in 0..60usize {
                    let mut r = seed();
                    let id = uuid::Uuid::new_v4().to_string();
                    r["report_id"] = json!(id);
                    r["data"]["environment"]["electric_cluster_uuid"] =
                        json!(clusters[rng.usize(..clusters.len())]);
                    r["data"]["environment"]["electric_instance_id"] =
                        json!(format!("instance-{}", rng.u8(..2)));
                    let addr = addrs[(s + n) % 2];
                    let res = http
                        .post(format!("http://{addr}/"))
                        .insert_header(("content-type", "application/json"))
                        .insert_header(("idempotency-key", id.clone()))
                        .send_body(serde_json::to_vec(&r).unwrap())
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    answers.push((id, res));
                }
                answers
            }));
        }
        let mut ids = HashSet::new();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for s in senders {
            for (id, status) in s.await.unwrap() {
                *statuses.entry(status).or_default() += 1;
                ids.insert(id);
            }
        }
        eprintln!("two receivers: answers by status {statuses:?}");
        assert_eq!(
            statuses.keys().copied().collect::<Vec<_>>(),
            vec![201],
            "every report answered 201, no 503 (deadlock) or other: {statuses:?}"
        );
        let http = client();
        let o = overview(&http, &one, 3, "2023-09-20").await;
        assert_eq!(o.completeness.reports, ids.len() as u64);
        assert_eq!(o.completeness.duplicates_refused, 0);
        assert_eq!(o.applications, clusters.len() as u64);
        assert_eq!(one.store().raw_count().await.unwrap(), ids.len() as u64);
        one.stop().await;
        two.stop().await;
        b.finish().await;
    }
}
