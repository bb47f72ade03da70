-- Every rlsctl transaction that changes the database: lock waits are bounded,
-- and literal quoting assumes standard_conforming_strings (SPEC s6).
SELECT pg_catalog.set_config('lock_timeout', %(lock_timeout)s, true),
       pg_catalog.set_config('standard_conforming_strings', 'on', true);
