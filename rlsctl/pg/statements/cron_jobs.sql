-- rlsctl's retention jobs (their names start with %(prefix)s), as pg_cron keeps them.
SELECT j.jobid, j.jobname, j.schedule, j.command, j.database, j.username, j.active
FROM cron.job AS j
WHERE pg_catalog.starts_with(j.jobname, %(prefix)s)
ORDER BY j.jobname;
