-- Whether the relation of this OID no longer exists (dropped, not renamed).
SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE oid = %(oid)s::oid) AS gone;
