-- The first schema: raw reports and the rollups the answers read.
-- Frozen: never edit a migration that has been published; add a new file instead.

CREATE TABLE reports (
    report_id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    day TEXT NOT NULL,
    cluster_uuid TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    report_version BIGINT NOT NULL,
    body TEXT NOT NULL
);

CREATE INDEX reports_received_at ON reports (received_at);

CREATE TABLE clusters (
    cluster_uuid TEXT PRIMARY KEY,
    first_day TEXT NOT NULL,
    last_day TEXT NOT NULL,
    latest_ts BIGINT NOT NULL,
    electric_version TEXT NOT NULL,
    pg_version TEXT,
    os_family TEXT NOT NULL,
    os_name TEXT NOT NULL,
    arch TEXT NOT NULL,
    reports BIGINT NOT NULL
);

CREATE INDEX clusters_last_day ON clusters (last_day);

CREATE TABLE instances (
    cluster_uuid TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    first_day TEXT NOT NULL,
    last_day TEXT NOT NULL,
    last_ts BIGINT NOT NULL,
    prev_ts BIGINT,
    prev_day TEXT,
    reports BIGINT NOT NULL,
    missed_windows BIGINT NOT NULL,
    PRIMARY KEY (cluster_uuid, instance_id)
);

-- Covers the overview's instances query: one index scan, no table lookups.
CREATE INDEX instances_span ON instances (cluster_uuid, last_day, first_day);

CREATE TABLE cluster_days (
    cluster_uuid TEXT NOT NULL,
    day TEXT NOT NULL,
    reports BIGINT NOT NULL DEFAULT 0,
    instances BIGINT NOT NULL DEFAULT 0,
    operations_from_pg BIGINT NOT NULL DEFAULT 0,
    transactions_from_pg BIGINT NOT NULL DEFAULT 0,
    operations_received_from_clients BIGINT NOT NULL DEFAULT 0,
    transactions_received_from_clients BIGINT NOT NULL DEFAULT 0,
    operations_sent_to_clients BIGINT NOT NULL DEFAULT 0,
    transactions_sent_to_clients BIGINT NOT NULL DEFAULT 0,
    initial_syncs BIGINT NOT NULL DEFAULT 0,
    subscriptions_established BIGINT NOT NULL DEFAULT 0,
    subscriptions_continued BIGINT NOT NULL DEFAULT 0,
    distinct_clients BIGINT NOT NULL DEFAULT 0,
    distinct_users BIGINT NOT NULL DEFAULT 0,
    dropped_events BIGINT NOT NULL DEFAULT 0,
    dropped_reports BIGINT NOT NULL DEFAULT 0,
    missed_windows BIGINT NOT NULL DEFAULT 0,
    recovered BIGINT NOT NULL DEFAULT 0,
    after_unclean_stop BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (cluster_uuid, day)
);

CREATE TABLE days (
    day TEXT PRIMARY KEY,
    reports BIGINT NOT NULL DEFAULT 0,
    clusters BIGINT NOT NULL DEFAULT 0,
    instances BIGINT NOT NULL DEFAULT 0,
    new_clusters BIGINT NOT NULL DEFAULT 0,
    duplicates BIGINT NOT NULL DEFAULT 0,
    operations_from_pg BIGINT NOT NULL DEFAULT 0,
    transactions_from_pg BIGINT NOT NULL DEFAULT 0,
    operations_received_from_clients BIGINT NOT NULL DEFAULT 0,
    transactions_received_from_clients BIGINT NOT NULL DEFAULT 0,
    operations_sent_to_clients BIGINT NOT NULL DEFAULT 0,
    transactions_sent_to_clients BIGINT NOT NULL DEFAULT 0,
    initial_syncs BIGINT NOT NULL DEFAULT 0,
    subscriptions_established BIGINT NOT NULL DEFAULT 0,
    subscriptions_continued BIGINT NOT NULL DEFAULT 0,
    distinct_clients BIGINT NOT NULL DEFAULT 0,
    distinct_users BIGINT NOT NULL DEFAULT 0,
    dropped_events BIGINT NOT NULL DEFAULT 0,
    dropped_reports BIGINT NOT NULL DEFAULT 0,
    missed_windows BIGINT NOT NULL DEFAULT 0,
    recovered BIGINT NOT NULL DEFAULT 0,
    after_unclean_stop BIGINT NOT NULL DEFAULT 0
);
