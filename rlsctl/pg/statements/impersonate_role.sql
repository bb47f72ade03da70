-- Become a principal without an identity: only the role changes.
SELECT pg_catalog.set_config('role', %(role)s, true);
