-- The per-database lock that serialises apply, migrate and rollback.
-- It waits at most lock_timeout (set just before) and is released at commit.
SELECT pg_catalog.pg_advisory_xact_lock(%(lock_class)s, %(lock_id)s);
