-- Whether a schema exists, and its owner.
SELECT pg_catalog.pg_get_userbyid(n.nspowner) AS owner
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname = %(schema)s;
