-- Forwarded observations are short-lived JSON read once: compressing them
-- (pglz, above 2 kB) cost the database more than it saved.
ALTER TABLE forwarded ALTER COLUMN observations SET STORAGE EXTERNAL;
