-- What the answers need to count activity by day rather than by first-to-last span: the
-- attributes of each cluster's latest report on each day (versions as of a period), the
-- reports counted on their day of receipt because their clock was not believed, and indexes
-- for "first active day in a window" and "clusters active on a day".

ALTER TABLE cluster_days ADD COLUMN clock_skewed BIGINT NOT NULL DEFAULT 0;

ALTER TABLE days ADD COLUMN clock_skewed BIGINT NOT NULL DEFAULT 0;

ALTER TABLE cluster_days ADD COLUMN latest_ts BIGINT;

ALTER TABLE cluster_days ADD COLUMN electric_version TEXT;

ALTER TABLE cluster_days ADD COLUMN pg_version TEXT;

ALTER TABLE cluster_days ADD COLUMN os_family TEXT;

ALTER TABLE cluster_days ADD COLUMN os_name TEXT;

ALTER TABLE cluster_days ADD COLUMN arch TEXT;

CREATE INDEX clusters_first_day ON clusters (first_day);
