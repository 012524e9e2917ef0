-- The readiness probe's scratch rows: written and deleted again by each probe.

CREATE TABLE checkpoint_probe (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    pad TEXT NOT NULL
);
