-- Every relation in user schemas: kind, owner, RLS flags, partition parent,
-- columns and their types, security_invoker, primary key, and what a view reads.
SELECT n.nspname AS schema,
       c.relname AS name,
       c.relkind AS kind,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       c.relrowsecurity AS rls,
       c.relforcerowsecurity AS forced,
       (SELECT pn.nspname || '.' || p.relname FROM pg_catalog.pg_inherits AS i
        JOIN pg_catalog.pg_class AS p ON p.oid = i.inhparent
        JOIN pg_catalog.pg_namespace AS pn ON pn.oid = p.relnamespace
        WHERE i.inhrelid = c.oid LIMIT 1) AS parent,
       ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute AS a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns,
       ARRAY(SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute AS a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS column_types,
       COALESCE('security_invoker=true' = ANY (c.reloptions) OR 'security_invoker=on' = ANY (c.reloptions), false)
           AS security_invoker,
       ARRAY(SELECT a.attname FROM pg_catalog.pg_constraint AS k
             CROSS JOIN LATERAL pg_catalog.unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = u.attnum
             WHERE k.conrelid = c.oid AND k.contype = 'p' ORDER BY u.ord) AS primary_key,
       ARRAY(SELECT DISTINCT sn.nspname || '.' || s.relname
             FROM pg_catalog.pg_rewrite AS r
             JOIN pg_catalog.pg_depend AS d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                            AND d.objid = r.oid
                                            AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
             JOIN pg_catalog.pg_class AS s ON s.oid = d.refobjid AND s.oid <> c.oid
             JOIN pg_catalog.pg_namespace AS sn ON sn.oid = s.relnamespace
             WHERE r.ev_class = c.oid) AS sources
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
ORDER BY 1, 2;
