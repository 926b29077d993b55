-- The instances a process name already replaced (comma-separated, newest
-- last), so a restarted dynoguard still orders instances by evidence.
ALTER TABLE samples ADD COLUMN replaced TEXT;
-- A second instance not yet ordered against the current one (a restart in
-- the middle of a preboot overlap must not take it for a newcomer).
ALTER TABLE samples ADD COLUMN contender TEXT;
-- The log time of the decision a claim was made for: a window lasts
-- restart_window from it (the engine's clock), and a lease left by a run
-- killed mid-call is an unknown outcome dated by it.
ALTER TABLE claims ADD COLUMN decided_at BIGINT;
-- The number every runtime-metrics sample of an app carries in
-- dyno=heroku.N.UUID, recorded by `dynoguard setup --wait`: a sample with
-- another number is another app's (a drain pointed at the wrong URL).
CREATE TABLE IF NOT EXISTS app_numbers (
    app         TEXT   NOT NULL PRIMARY KEY,
    number      BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
