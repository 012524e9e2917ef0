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
