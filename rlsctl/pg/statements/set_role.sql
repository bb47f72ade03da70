-- Act as a role for the rest of the transaction (reverted at commit or rollback).
SELECT pg_catalog.set_config('role', %(role)s, true);
