-- The audit log table of the project schema (its OID, NULL when there is none), and whether the
-- table a rollback found before its down scripts ran (%(oid)s) is gone for good: dropped, not
-- renamed, so that its hash chain's bookkeeping may go with it (rlsctl.migrate.run). The chain's
-- tables must exist for there to be anything to forget.
SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(%(schema)s) || '.' || pg_catalog.quote_ident(%(log)s))::oid AS oid,
       %(oid)s::oid IS NOT NULL
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = %(oid)s::oid)
       AND pg_catalog.to_regclass(pg_catalog.quote_ident(%(helper_schema)s) || '.audit_lane') IS NOT NULL
       AS dropped;
