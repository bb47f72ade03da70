-- The transaction `rlsctl explain` runs in (always rolled back): bounded statements, standard
-- literal quoting, and the project's schema after pg_catalog, as the application resolves names
-- (PostgreSQL searches pg_catalog first anyway), with pg_temp last.
SELECT pg_catalog.set_config('statement_timeout', %(timeout)s, true),
       pg_catalog.set_config('standard_conforming_strings', 'on', true),
       pg_catalog.set_config('search_path', %(search_path)s, true);
