-- One batch of rlsctl test's probes (templates/ops/tester_batch.sql.j2 made the function).
SELECT pg_temp.rlsctl_run_probes(%(probes)s::jsonb) AS results;
