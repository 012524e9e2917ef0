-- Reports that stretched an instance's first-to-last span over days it did not report on
-- (a report more than a day after the instance's previous one, or before it). The answers
-- kept for finished periods are computed again when this count moves (see store/cache.rs).

ALTER TABLE days ADD COLUMN instance_gaps BIGINT NOT NULL DEFAULT 0;

-- The clusters active on a day, or in a period: a range of this index, not a scan of every
-- cluster-day row (the primary key leads with the cluster). Neither column ever changes, so
-- the upserts of existing rows never touch it.
CREATE INDEX cluster_days_day ON cluster_days (day, cluster_uuid);
