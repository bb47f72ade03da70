-- Whether the key store's registry of encrypted columns exists in the helper schema
-- (key stores made before it was introduced have none).
SELECT pg_catalog.to_regclass(pg_catalog.quote_ident(%(schema)s) || '.encrypted_column') IS NOT NULL AS found;
