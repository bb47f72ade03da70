-- Per table: can the current role count every row? True when RLS does not
-- apply to it, or a permissive SELECT policy for it (or PUBLIC) grants every
-- row (plain `true`, or the role check rlsctl renders for `true`) and no
-- restrictive policy narrows it.
SELECT c.relname AS table_name,
       (r.rolsuper OR r.rolbypassrls
        OR NOT c.relrowsecurity
        OR (NOT c.relforcerowsecurity AND pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'))
        OR (EXISTS (SELECT FROM pg_catalog.pg_policy AS p
                    CROSS JOIN LATERAL pg_catalog.unnest(p.polroles) AS pr(oid)
                    WHERE p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
                      AND (pr.oid = 0 OR pg_catalog.pg_has_role(current_user, pr.oid, 'USAGE'))
                      AND (pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true'
                           OR pg_catalog.pg_get_expr(p.polqual, p.polrelid) = pg_catalog.format(
                                  '( SELECT pg_has_role(CURRENT_USER, %%L::name, ''USAGE''::text) AS pg_has_role)',
                                  pg_catalog.pg_get_userbyid(pr.oid))))
            AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy AS p
                            WHERE p.polrelid = c.oid AND NOT p.polpermissive))) AS sees_all
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_roles AS r ON r.rolname = current_user
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
ORDER BY 1;
