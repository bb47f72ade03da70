-- The policies that apply to a role on some tables of the project's schema, for a command: those
-- naming the role, a role it is a member of, or PUBLIC; FOR ALL ones too. What a flagged plan's
-- filters come from.
SELECT c.relname AS table_name, p.polname AS policy, p.polcmd AS command, p.polpermissive AS permissive
FROM pg_catalog.pg_policy AS p
JOIN pg_catalog.pg_class AS c ON c.oid = p.polrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s
  AND c.relname = ANY (%(tables)s::text[])
  AND p.polcmd = ANY (%(commands)s::"char"[])
  AND (p.polroles = '{0}'::oid[]
       OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p.polroles) AS r(oid)
                  WHERE pg_catalog.pg_has_role(%(role)s, r.oid, 'MEMBER')))
ORDER BY c.relname, p.polname;
