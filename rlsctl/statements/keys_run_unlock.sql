-- Releases the lock of keys_run_lock.sql.
SELECT pg_catalog.pg_advisory_unlock(1919710051, 3) AS unlocked;
