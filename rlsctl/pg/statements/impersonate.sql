-- Become a principal for the rest of the (sub)transaction: the role, and the
-- identity setting the policies read (docs/identity.md).
SELECT pg_catalog.set_config('role', %(role)s, true),
       pg_catalog.set_config(%(setting)s, %(user_id)s, true);
