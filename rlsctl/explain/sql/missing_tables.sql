-- The project's tables this database does not have: a database that is not the project's, or one
-- not migrated yet.
SELECT t.name
FROM unnest(%(tables)s::text[]) AS t(name)
WHERE NOT EXISTS (
    SELECT FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = t.name AND c.relkind IN ('r', 'p')
)
ORDER BY t.name;
