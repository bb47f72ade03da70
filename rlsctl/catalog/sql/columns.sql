-- Columns of every table in a schema, in table order.
SELECT c.relname AS table_name,
       a.attname AS name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null,
       (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') AS has_default,
       -- The sequence (of the same schema) the column's default depends on: nextval() of a
       -- serial column, which needs USAGE of whoever inserts. An identity column has no default
       -- expression: PostgreSQL draws its values without a privilege check.
       (SELECT s.relname
        FROM pg_catalog.pg_attrdef AS d
        JOIN pg_catalog.pg_depend AS dep
          ON dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = d.oid
         AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
        JOIN pg_catalog.pg_class AS s ON s.oid = dep.refobjid AND s.relkind = 'S' AND s.relnamespace = n.oid
        WHERE d.adrelid = c.oid AND d.adnum = a.attnum
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
