-- Role memberships in which one of the given roles is the member or the role granted.
SELECT g.rolname AS role,
       m.rolname AS member
FROM pg_catalog.pg_auth_members AS am
JOIN pg_catalog.pg_roles AS g ON g.oid = am.roleid
JOIN pg_catalog.pg_roles AS m ON m.oid = am.member
WHERE g.rolname = ANY (%(names)s) OR m.rolname = ANY (%(names)s)
GROUP BY 1, 2
ORDER BY 1, 2;
