-- Per-minute memory history of every dyno (7 days), written in batches by
-- every replica: one row per app, dyno and minute (unix ms of the minute's
-- start, log time). Merging keeps min/max exact and the average right
-- (sum / samples), whichever replica or batch a sample came in.
CREATE TABLE IF NOT EXISTS history (
    app       TEXT             NOT NULL,
    dyno      TEXT             NOT NULL,
    minute    BIGINT           NOT NULL,
    samples   INTEGER          NOT NULL,
    total_min DOUBLE PRECISION NOT NULL,
    total_max DOUBLE PRECISION NOT NULL,
    total_sum DOUBLE PRECISION NOT NULL,
    rss_max   DOUBLE PRECISION,
    swap_max  DOUBLE PRECISION,
    quota     DOUBLE PRECISION,
    instance  TEXT,
    last_at   BIGINT           NOT NULL,
    PRIMARY KEY (app, dyno, minute)
);
CREATE INDEX IF NOT EXISTS history_minute ON history (minute);
CREATE INDEX IF NOT EXISTS events_app_dyno_at ON events (app, dyno, at);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
