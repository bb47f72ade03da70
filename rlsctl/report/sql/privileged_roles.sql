-- Roles holding SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or REPLICATION that have a part in
-- this database, and the bootstrap superuser. A part: the role owns the database, a schema,
-- relation or function of it, holds a privilege on one, is named in a policy; or it is a member
-- of such a role (it can SET ROLE to it), or such a role is a member of it. Roles of the cluster
-- with no part here are cluster administration, as lint's SEC007 sees them: not listed, so the
-- list does not change when another database's roles do.
WITH RECURSIVE user_ns AS (
    SELECT n.oid, n.nspowner, n.nspacl
    FROM pg_catalog.pg_namespace AS n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT pg_catalog.starts_with(n.nspname, 'pg_')
),
direct AS (
    SELECT d.datdba AS oid FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database()
    UNION SELECT a.grantee FROM pg_catalog.pg_database AS d, LATERAL pg_catalog.aclexplode(d.datacl) AS a
          WHERE d.datname = pg_catalog.current_database()
    UNION SELECT user_ns.nspowner FROM user_ns
    UNION SELECT a.grantee FROM user_ns, LATERAL pg_catalog.aclexplode(user_ns.nspacl) AS a
    UNION SELECT c.relowner FROM pg_catalog.pg_class AS c JOIN user_ns ON user_ns.oid = c.relnamespace
    UNION SELECT a.grantee FROM pg_catalog.pg_class AS c JOIN user_ns ON user_ns.oid = c.relnamespace,
          LATERAL pg_catalog.aclexplode(c.relacl) AS a
    UNION SELECT p.proowner FROM pg_catalog.pg_proc AS p JOIN user_ns ON user_ns.oid = p.pronamespace
    UNION SELECT a.grantee FROM pg_catalog.pg_proc AS p JOIN user_ns ON user_ns.oid = p.pronamespace,
          LATERAL pg_catalog.aclexplode(p.proacl) AS a
    UNION SELECT pg_catalog.unnest(pol.polroles) FROM pg_catalog.pg_policy AS pol
),
members AS (
    SELECT direct.oid FROM direct WHERE direct.oid <> 0
    UNION
    SELECT m.member FROM pg_catalog.pg_auth_members AS m JOIN members ON m.roleid = members.oid
),
granted AS (
    SELECT members.oid FROM members
    UNION
    SELECT m.roleid FROM pg_catalog.pg_auth_members AS m JOIN granted ON m.member = granted.oid
)
SELECT ro.rolname AS name, ro.rolcanlogin AS login, ro.rolsuper AS superuser, ro.rolbypassrls AS bypassrls,
       ro.rolcreaterole AS createrole, ro.rolcreatedb AS createdb, ro.rolreplication AS replication,
       ro.oid = 10 AS bootstrap
FROM pg_catalog.pg_roles AS ro
WHERE (ro.oid IN (SELECT granted.oid FROM granted) OR ro.oid = 10)
  AND (ro.rolsuper OR ro.rolbypassrls OR ro.rolcreaterole OR ro.rolcreatedb OR ro.rolreplication)
ORDER BY ro.rolname;
