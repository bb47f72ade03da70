-- A keys batch joins ~1,000 rows back to their table by primary key: without
-- this the planner may hash-join against a scan of the whole table per batch.
-- Its commit need not wait for the WAL flush: a batch lost in a crash leaves
-- its rows under their old key, still readable, and the next run redoes it
-- (keys are retired only after a recount finds no value under them).
SELECT pg_catalog.set_config('enable_hashjoin', 'off', true),
       pg_catalog.set_config('enable_mergejoin', 'off', true),
       pg_catalog.set_config('synchronous_commit', 'off', true);
