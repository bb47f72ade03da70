-- Which of these roles exist on the cluster.
SELECT r.rolname AS name
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = ANY (%(roles)s)
ORDER BY 1;
