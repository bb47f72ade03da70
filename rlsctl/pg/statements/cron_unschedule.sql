-- Remove one pg_cron job.
SELECT cron.unschedule(%(jobid)s::bigint) AS removed;
