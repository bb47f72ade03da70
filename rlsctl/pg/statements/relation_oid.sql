-- A relation's OID by schema and name (NULL when there is none): what stays the table's through a
-- rename (rlsctl.migrate.run, the audit log a rollback drops).
SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(%(schema)s) || '.' || pg_catalog.quote_ident(%(name)s))::oid AS oid;
