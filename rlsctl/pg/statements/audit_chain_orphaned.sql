-- Whether the audit chain's bookkeeping (rlsctl's helper schema) still holds the heads of a log
-- table that no longer exists: a rollback dropped the log, and a log created again must start a
-- chain of its own.
SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(%(schema)s) || '.' || pg_catalog.quote_ident(%(log)s)) IS NULL
       AND pg_catalog.to_regclass(pg_catalog.quote_ident(%(helper_schema)s) || '.audit_lane') IS NOT NULL
       AS orphaned;
