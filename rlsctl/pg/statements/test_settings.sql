-- The test transaction: bounded statements, standard literal quoting, and names
-- resolved in pg_catalog only (see session_settings.sql).
SELECT pg_catalog.set_config('statement_timeout', '30s', true),
       pg_catalog.set_config('standard_conforming_strings', 'on', true),
       pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
