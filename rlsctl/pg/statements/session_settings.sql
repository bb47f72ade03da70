-- Every rlsctl session resolves names in pg_catalog only (then pg_temp): rlsctl's own
-- statements qualify what is not PostgreSQL's, and a schema others can create in
-- (public: the owner role may) must never lend an operator, function or type to a
-- statement rlsctl runs, often as a superuser (CVE-2018-1058). Migration phases set
-- the project's schema for their own transaction.
SET search_path = pg_catalog, pg_temp;
