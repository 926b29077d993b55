-- The leader marks the forwarded rows it takes with its epoch and deletes
-- them once applied; rows marked by an older epoch (a leader that died
-- holding them) are taken again by the next.
ALTER TABLE forwarded ADD COLUMN IF NOT EXISTS taken_epoch BIGINT;
