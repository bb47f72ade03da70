-- Enum types of a schema with their labels in sort order.
SELECT t.typname AS name,
       ARRAY(SELECT e.enumlabel FROM pg_catalog.pg_enum AS e
             WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) AS labels
FROM pg_catalog.pg_type AS t
JOIN pg_catalog.pg_namespace AS n ON n.oid = t.typnamespace
WHERE n.nspname = %(schema)s AND t.typtype = 'e'
ORDER BY t.typname;
