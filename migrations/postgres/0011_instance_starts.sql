-- Where each instance of a dyno lies in `history` (issue 21: the dashboard's
-- instance markers without reading 7 days of minutes): one row per app, dyno
-- and instance, holding bounds of the minutes written with that instance —
-- `first_minute` the lowest ever written, `ends_before` the end of the
-- 12-minute slot of the highest (unix ms, exclusive). Every minute of
-- `history` whose instance is this one lies in [first_minute, ends_before);
-- a newer sample's instance can take a minute over, so the bounds may be
-- wider than the minutes left, and `instance_starts` reads the instance's
-- first minute in `history` within them. Widened in the transaction that
-- writes the minutes (`write_history`), deleted with the last of them.
CREATE TABLE IF NOT EXISTS instance_starts (
    app          TEXT   NOT NULL,
    dyno         TEXT   NOT NULL,
    instance     TEXT   NOT NULL,
    first_minute BIGINT NOT NULL,
    ends_before  BIGINT NOT NULL,
    PRIMARY KEY (app, dyno, instance)
);
-- Pruning: the rows whose minutes are all gone.
CREATE INDEX IF NOT EXISTS instance_starts_ends_before ON instance_starts (ends_before);
-- The minutes already stored: an upgraded database shows its markers.
-- (`m - ((m % 720000) + 720000) % 720000` floors to a slot, even before 1970.)
INSERT INTO instance_starts (app, dyno, instance, first_minute, ends_before)
SELECT app, dyno, instance, MIN(minute),
       MAX(minute) - ((MAX(minute) % 720000) + 720000) % 720000 + 720000
FROM history
WHERE instance IS NOT NULL
GROUP BY app, dyno, instance;
