-- Restart claims: the only cross-replica coordination. One row per process;
-- a claim is held until expires_at (unix ms) and taken over only after it.
CREATE TABLE IF NOT EXISTS claims (
    app        TEXT    NOT NULL,
    dyno       TEXT    NOT NULL,
    instance   TEXT,
    holder     TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (app, dyno)
);

-- Every restart call and its outcome ('ok', 'failed', 'dry_run').
CREATE TABLE IF NOT EXISTS restarts (
    id         BIGSERIAL PRIMARY KEY,
    app        TEXT    NOT NULL,
    dyno       TEXT    NOT NULL,
    instance   TEXT,
    reason     TEXT    NOT NULL,
    at         BIGINT  NOT NULL,
    outcome    TEXT    NOT NULL,
    request_id TEXT,
    detail     TEXT
);
CREATE INDEX IF NOT EXISTS restarts_app_dyno_at ON restarts (app, dyno, at);

-- Decision events, as their JSON.
CREATE TABLE IF NOT EXISTS events (
    id    BIGSERIAL PRIMARY KEY,
    at    BIGINT NOT NULL,
    app   TEXT   NOT NULL,
    dyno  TEXT,
    kind  TEXT   NOT NULL,
    body  TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS events_app_at ON events (app, at);

-- The latest sample of every dyno (written in batches).
CREATE TABLE IF NOT EXISTS samples (
    app      TEXT   NOT NULL,
    dyno     TEXT   NOT NULL,
    instance TEXT,
    at       BIGINT NOT NULL,
    total    DOUBLE PRECISION,
    rss      DOUBLE PRECISION,
    swap     DOUBLE PRECISION,
    quota    DOUBLE PRECISION,
    PRIMARY KEY (app, dyno)
);
