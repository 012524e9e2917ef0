-- Refused reports kept with their reason, never counted (see src/quarantine.rs).

CREATE TABLE quarantine (
    id TEXT PRIMARY KEY,
    received_us BIGINT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    report_id TEXT,
    bytes BIGINT NOT NULL,
    body TEXT NOT NULL
);

CREATE UNIQUE INDEX quarantine_report_id ON quarantine (report_id);

CREATE INDEX quarantine_age ON quarantine (received_us, id);

CREATE TABLE quarantine_totals (
    id BIGINT PRIMARY KEY,
    reports BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    dropped BIGINT NOT NULL
);

INSERT INTO quarantine_totals (id, reports, bytes, dropped) VALUES (1, 0, 0, 0);
