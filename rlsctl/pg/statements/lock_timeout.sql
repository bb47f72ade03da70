-- A batch waits at most this long for a row or table lock (then fails, and is retried).
SELECT pg_catalog.set_config('lock_timeout', %(timeout)s, true);
