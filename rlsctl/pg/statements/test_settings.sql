-- The test transaction: bounded statements, and standard literal quoting.
SELECT pg_catalog.set_config('statement_timeout', '30s', true),
       pg_catalog.set_config('standard_conforming_strings', 'on', true);
