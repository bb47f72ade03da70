-- Releases the lock of keys_run_lock.sql.
SELECT pg_catalog.pg_advisory_unlock(%(lock_class)s, %(lock_id)s) AS unlocked;
