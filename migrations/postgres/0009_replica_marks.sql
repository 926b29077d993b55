-- How far each follower has forwarded: everything it received before
-- `through` (its wall clock, unix ms) is in `forwarded`. The leader applies
-- its own batches, and the forwarded ones, up to the lowest mark of the
-- followers alive (seen within seconds): log order without a fixed wait,
-- however slow a follower is.
CREATE TABLE IF NOT EXISTS replica_marks (
    scope   TEXT        NOT NULL,
    replica TEXT        NOT NULL,
    through BIGINT      NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, replica)
);
