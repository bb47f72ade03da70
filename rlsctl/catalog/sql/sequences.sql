-- Sequences of the helper schema, with their owner: rlsctl's API-key transaction marker.
SELECT c.relname AS name,
       pg_catalog.pg_get_userbyid(c.relowner) AS owner
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind = 'S'
ORDER BY c.relname;
