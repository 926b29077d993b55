-- Replicas that decide as one (SPEC §10). One row per replica group (the
-- set of apps it watches): who leads, since which epoch, until when — on
-- the database's clock, renewed by the leader. A lease row rather than a
-- session advisory lock: it survives PgBouncer transaction pooling.
CREATE TABLE IF NOT EXISTS leaders (
    scope      TEXT        NOT NULL PRIMARY KEY,
    holder     TEXT        NOT NULL,
    epoch      BIGINT      NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
-- The leader's epoch a restart claim was made under (the fencing token).
ALTER TABLE claims ADD COLUMN IF NOT EXISTS epoch BIGINT;
-- Observations a follower received, waiting for the leader (a table as the
-- log; NOTIFY dynoguard_forwarded wakes the leader). Consumed rows are
-- deleted by the leader.
CREATE TABLE IF NOT EXISTS forwarded (
    id           BIGSERIAL PRIMARY KEY,
    scope        TEXT   NOT NULL,
    app          TEXT   NOT NULL,
    replica      TEXT   NOT NULL,
    frame_id     TEXT,
    -- Wall clock at the follower (unix ms): forwarding lag.
    received_at  BIGINT NOT NULL,
    -- Log times of the batch's first and last line (blind detection).
    first_line   BIGINT,
    last_line    BIGINT,
    -- JSON array of observations.
    observations TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS forwarded_scope ON forwarded (scope, id);
