-- Events carry the log time of what they describe (`at`); retention needs the
-- time they were stored, or a replayed or backlogged log would be deleted as
-- soon as it is written. Older rows fall back to `at`.
ALTER TABLE events ADD COLUMN stored_at BIGINT;
CREATE INDEX IF NOT EXISTS events_stored_at ON events (stored_at);
