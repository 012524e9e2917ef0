//! One bad report never fails its neighbours: a schema-valid report Postgres cannot store
//! (`\u0000` in a string) sent beside legitimate senders fails at most itself, never the batch
//! it shares a transaction with. It is quarantined (202) before it reaches a transaction, on
//! every configured database alike.

mod common;

use common::{backends, client, seed, start_with};
use serde_json::json;

#[actix_rt::test]
async fn a_report_postgres_cannot_store_does_not_fail_the_batch_it_rides_in() {
    for b in backends("neighbours").await {
        let running = start_with(&b.db, |c| c.cluster_burst = 100_000).await;
        let addr = running.addr();
        let post = move |report: serde_json::Value| async move {
            let http = client();
            let id = report["report_id"].as_str().unwrap().to_owned();
            http.post(format!("http://{addr}/"))
                .insert_header(("content-type", "application/json"))
                .insert_header(("idempotency-key", id))
                .send_body(serde_json::to_vec(&report).unwrap())
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        };
        let fresh = || {
            let mut r = seed();
            r["report_id"] = json!(uuid::Uuid::new_v4().to_string());
            r["data"]["environment"]["electric_cluster_uuid"] =
                json!(uuid::Uuid::new_v4().to_string());
            r
        };
        let bad = actix_rt::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..60 {
                let mut r = fresh();
                r["data"]["environment"]["os"]["family"] = json!("un\u{0}ix");
                answers.push(post(r).await);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            answers
        });
        let mut good = Vec::new();
        for _ in 0..4 {
            good.push(actix_rt::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..40 {
                    answers.push(post(fresh()).await);
                }
                answers
            }));
        }
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for g in good {
            for s in g.await.unwrap() {
                *statuses.entry(s).or_default() += 1;
            }
        }
        let bad = bad.await.unwrap();
        eprintln!(
            "{}: legitimate reports by status {statuses:?}; the bad ones: {:?}",
            b.name,
            bad.iter().fold(
                std::collections::BTreeMap::<u16, usize>::new(),
                |mut m, s| {
                    *m.entry(*s).or_default() += 1;
                    m
                }
            )
        );
        assert_eq!(
            statuses.keys().copied().collect::<Vec<_>>(),
            vec![201],
            "{}: every legitimate report stored: {statuses:?}",
            b.name
        );
        assert!(
            bad.iter().all(|s| *s == 202),
            "{}: the bad reports are quarantined (202, never a 503 the reporter would retry \
             forever): {bad:?}",
            b.name
        );
        running.stop().await;
        b.finish().await;
    }
}
