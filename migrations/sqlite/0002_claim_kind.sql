-- A claim is a short 'lease' while its restart call is in flight and becomes
-- the 'window' once the restart happened. A lease left by a crashed run of the
-- same dyno is taken over at start.
ALTER TABLE claims ADD COLUMN kind TEXT NOT NULL DEFAULT 'window';
