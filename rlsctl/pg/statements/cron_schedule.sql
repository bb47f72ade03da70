-- Create a pg_cron job, or update the one of this name and user: pg_cron runs it as the
-- user who scheduled it, in %(database)s.
SELECT cron.schedule_in_database(%(name)s, %(schedule)s, %(command)s, %(database)s) AS jobid;
