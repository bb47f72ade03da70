-- A fixed search_path while reading policy expressions back, so the live and
-- the declared ones are deparsed with the same qualification.
SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
