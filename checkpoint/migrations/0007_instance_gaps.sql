-- Reports that stretched an instance's first-to-last span over days it did not report on
-- (a report more than a day after the instance's previous one, or before it). The answers
-- kept for finished periods are computed again when this count moves (see store/cache.rs).

ALTER TABLE days ADD COLUMN instance_gaps BIGINT NOT NULL DEFAULT 0;
