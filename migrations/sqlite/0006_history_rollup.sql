-- The per-minute history rolled up into 12-minute slots (issue 21): one row
-- per app, dyno and slot (unix ms of the slot's start, floored), always the
-- aggregate of the minutes of `history` in it — samples and total_sum summed,
-- the lowest total_min, the highest total_max, rss_max, swap_max and quota.
-- Twelve minutes divide the buckets of the long ranges (24 h: 12 min, 7 days:
-- 84 min), so reading them here gives the same figures as reading minutes.
-- Written in the same transaction as the minutes it sums (`write_history`),
-- pruned with them.
CREATE TABLE IF NOT EXISTS history_rollup (
    app       TEXT             NOT NULL,
    dyno      TEXT             NOT NULL,
    slot      BIGINT           NOT NULL,
    samples   INTEGER          NOT NULL,
    total_min DOUBLE PRECISION NOT NULL,
    total_max DOUBLE PRECISION NOT NULL,
    total_sum DOUBLE PRECISION NOT NULL,
    rss_max   DOUBLE PRECISION,
    swap_max  DOUBLE PRECISION,
    quota_max DOUBLE PRECISION,
    PRIMARY KEY (app, dyno, slot)
);
-- Each dyno's slot at a range's ends, and the slots pruned (a range of an
-- app's slots reads the primary key, in the order it groups by).
CREATE INDEX IF NOT EXISTS history_rollup_slot ON history_rollup (slot, app, dyno);
-- The minutes already stored: an upgraded database shows full charts.
-- (`minute - ((minute % 720000) + 720000) % 720000` floors, even before 1970.)
INSERT INTO history_rollup (app, dyno, slot, samples, total_min, total_max, total_sum, rss_max, swap_max, quota_max)
SELECT app, dyno, minute - ((minute % 720000) + 720000) % 720000,
       SUM(samples), MIN(total_min), MAX(total_max), SUM(total_sum), MAX(rss_max), MAX(swap_max), MAX(quota)
FROM history
GROUP BY app, dyno, minute - ((minute % 720000) + 720000) % 720000;
