-- Columns of every table in a schema, in table order.
SELECT c.relname AS table_name,
       a.attname AS name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
       -- The sequence a serial column draws from: its default is exactly nextval() of a sequence
       -- owned by this very column (OWNED BY: a serial's, or one made so), whose USAGE whoever
       -- inserts needs. Not any sequence a default mentions: a currval() of another table's
       -- sequence, or another application's counter, must never be granted by rlsctl. An
       -- identity column has no default expression: PostgreSQL numbers it without a privilege check.
       (SELECT s.relname
        FROM pg_catalog.pg_attrdef AS d
        JOIN pg_catalog.pg_depend AS owned
          ON owned.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND owned.deptype = 'a'
         AND owned.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
         AND owned.refobjid = c.oid AND owned.refobjsubid = a.attnum
        JOIN pg_catalog.pg_class AS s ON s.oid = owned.objid AND s.relkind = 'S' AND s.relnamespace = n.oid
        WHERE d.adrelid = c.oid AND d.adnum = a.attnum
          AND pg_catalog.pg_get_expr(d.adbin, d.adrelid)
              = pg_catalog.format('nextval(%%L::regclass)', s.oid::pg_catalog.regclass::text)
        ORDER BY s.relname
        LIMIT 1) AS sequence
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_class AS c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s
  AND c.relkind IN ('r', 'p')
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY c.relname, a.attnum;
