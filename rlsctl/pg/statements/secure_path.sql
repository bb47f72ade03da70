-- For this transaction, names resolve in pg_catalog only (then pg_temp): see
-- session_settings.sql. The library's entry points run it too, since callers
-- may bring connections of their own.
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
