-- Schemas by name, with their owners.
SELECT n.nspname AS name, pg_catalog.pg_get_userbyid(n.nspowner) AS owner
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname = ANY (%(schemas)s)
ORDER BY 1;
