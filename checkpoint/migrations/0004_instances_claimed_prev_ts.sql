-- The latest report's last_reported: what the multi-row instance upsert compares with the
-- previous report's timestamp (a missed window when they differ).

ALTER TABLE instances ADD COLUMN claimed_prev_ts BIGINT;
