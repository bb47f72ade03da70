-- Whether rlsctl's data-key table exists in the helper schema.
SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(%(schema)s) || '.encryption_key') IS NOT NULL AS found;
