-- The sessions a backend's lock request waits for, asked from a second connection
-- while it waits (BlockerWatch, rlsctl/change/txn.py): pg_blocking_pids gives the
-- holders of a conflicting lock and the conflicting requests queued ahead of it;
-- pg_stat_activity how long each one's transaction has been open, its state and its
-- (truncated) query. `waiting_for` names the table the request is for (NULL for
-- rlsctl's advisory lock). Oldest transaction first.
-- (The watching session resolves names in pg_catalog first: session_settings.sql.)
SELECT a.pid,
       EXTRACT(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::float8 AS xact_seconds,
       a.state,
       pg_catalog.left(a.query, %(query_chars)s) AS query,
       (SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname)
          FROM pg_catalog.pg_locks AS l
          JOIN pg_catalog.pg_class AS c ON c.oid = l.relation
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE l.pid = %(pid)s AND NOT l.granted
         LIMIT 1) AS waiting_for
FROM pg_catalog.unnest(pg_catalog.pg_blocking_pids(%(pid)s)) AS b(pid)
JOIN pg_catalog.pg_stat_activity AS a ON a.pid = b.pid
ORDER BY a.xact_start NULLS LAST, a.pid;
