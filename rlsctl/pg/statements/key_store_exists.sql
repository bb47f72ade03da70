-- Whether rlsctl's data-key table exists in the helper schema, with the function that unwraps
-- its keys (a rollback to a phase without encrypted columns keeps the table, drops the function:
-- then this apply creates it, and the next one checks the key).
SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(%(schema)s) || '.encryption_key') IS NOT NULL
       AND pg_catalog.to_regprocedure(pg_catalog.quote_ident(%(schema)s) || '.data_key(text)') IS NOT NULL
       AS found;
