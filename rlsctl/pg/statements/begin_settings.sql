-- Every rlsctl transaction that changes the database: lock waits are bounded,
-- literal quoting assumes standard_conforming_strings (docs/threat-model.md, Guarantees), and names
-- resolve in pg_catalog first: an unqualified operator or type in a policy is
-- bound when the policy is created, so nobody's schema may come before it.
-- (Migration phases set their own search_path to the project schema.)
-- The backend's pid is for apply's lock watch, which asks who it waits for
-- (a pooler may hand each transaction another backend).
SELECT pg_catalog.set_config('lock_timeout', %(lock_timeout)s, true),
       pg_catalog.set_config('standard_conforming_strings', 'on', true),
       pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true),
       pg_catalog.pg_backend_pid() AS pid;
