-- What a role must be able to reach outside rlsctl's own schema: EXECUTE on functions (the
-- pgcrypto functions the keys role calls) and USAGE on their schema, wherever the platform
-- installed them. Read as the role's effective privilege (PUBLIC's included): who else may
-- execute an extension's functions is not rlsctl's business, only that this role can.
-- `acts_as_owner`: this session may grant it (it is, or is a member of, the owner).
WITH me AS (
    SELECT r.rolsuper AS superuser FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user
)
SELECT 'function' AS kind, n.nspname::text AS schema, p.proname::text AS name,
       pg_catalog.oidvectortypes(p.proargtypes) AS arg_types,
       pg_catalog.has_function_privilege(%(role)s, p.oid, 'EXECUTE') AS granted,
       (SELECT superuser FROM me) OR pg_catalog.pg_has_role(current_user, p.proowner, 'MEMBER') AS acts_as_owner
FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE p.oid IN (SELECT pg_catalog.to_regprocedure(f) FROM pg_catalog.unnest(%(functions)s::text[]) AS f)
  AND EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = %(role)s)
UNION ALL
SELECT 'schema', n.nspname::text, NULL, NULL,
       pg_catalog.has_schema_privilege(%(role)s, n.oid, 'USAGE'),
       (SELECT superuser FROM me) OR pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')
FROM pg_catalog.pg_namespace AS n
WHERE n.nspname = ANY (%(schemas)s::text[])
  AND EXISTS (SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = %(role)s)
ORDER BY 1, 2, 3, 4;
