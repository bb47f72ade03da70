-- A phase run outside a transaction (CREATE INDEX CONCURRENTLY): its unqualified names land
-- in the project's schema for the rest of the session, until reset_search_path.
SELECT pg_catalog.set_config('search_path', %(path)s, false);
