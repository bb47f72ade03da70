-- rlsctl's data-key table in the helper schema: its owner, and whether an active key exists.
-- The active flag is read through a function-free probe of pg_class/pg_stats-free catalog only
-- for the owner; whether a key is active needs the table itself (see active_key.sql).
SELECT pg_catalog.pg_get_userbyid(c.relowner) AS owner
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s
  AND c.relname = 'encryption_key'
  AND c.relkind = 'r';
