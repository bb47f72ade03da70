-- The given roles and every role that is a member of one of them, directly or through other
-- roles, with the attributes that decide whether row-level security binds it. `reaches` names
-- the given roles it is (or is a member of); `inherits`: it has their privileges without SET ROLE.
WITH RECURSIVE reach AS (
    SELECT ro.oid AS member, ro.oid AS target
    FROM pg_catalog.pg_roles AS ro
    WHERE ro.rolname = ANY (%(roles)s)
    UNION
    SELECT m.member, reach.target
    FROM pg_catalog.pg_auth_members AS m
    JOIN reach ON m.roleid = reach.member
)
SELECT ro.rolname AS name, ro.rolcanlogin AS login, ro.rolsuper AS superuser, ro.rolbypassrls AS bypassrls,
       ro.rolcreaterole AS createrole, ro.rolinherit AS inherits,
       ARRAY(SELECT DISTINCT t.rolname FROM reach AS r2 JOIN pg_catalog.pg_roles AS t ON t.oid = r2.target
             WHERE r2.member = ro.oid ORDER BY 1) AS reaches
FROM pg_catalog.pg_roles AS ro
WHERE ro.oid IN (SELECT reach.member FROM reach)
ORDER BY ro.rolname;
