-- Who owns each managed table, and whether it is the owner role the tests would act as (by name,
-- as `rlsctl apply` sets it with ALTER TABLE ... OWNER TO). A database applied with another role
-- prefix has other owners: the roles the prefix in use names may belong to another deployment.
SELECT c.relname AS table,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       (c.relowner = r.oid) IS TRUE AS owned
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_roles AS r ON r.rolname = %(owner)s
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND c.relname = ANY (%(tables)s)
ORDER BY c.relname COLLATE "C";
