-- Every rlsctl transaction that changes the database: lock waits are bounded,
-- literal quoting assumes standard_conforming_strings (SPEC s6), and names
-- resolve in pg_catalog first: an unqualified operator or type in a policy is
-- bound when the policy is created, so nobody's schema may come before it.
-- (Migration phases set their own search_path to the project schema.)
SELECT pg_catalog.set_config('lock_timeout', %(lock_timeout)s, true),
       pg_catalog.set_config('standard_conforming_strings', 'on', true),
       pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
