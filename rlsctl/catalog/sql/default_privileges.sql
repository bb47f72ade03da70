-- Default privileges set with ALTER DEFAULT PRIVILEGES FOR ROLE (all schemas),
-- with whether PUBLIC keeps its privilege. objtype: r tables, S sequences,
-- f functions, T types, n schemas.
SELECT pg_catalog.pg_get_userbyid(d.defaclrole) AS creator,
       d.defaclobjtype AS objtype,
       n.nspname AS schema,
       EXISTS (SELECT FROM pg_catalog.aclexplode(d.defaclacl) AS acl WHERE acl.grantee = 0) AS public_granted
FROM pg_catalog.pg_default_acl AS d
LEFT JOIN pg_catalog.pg_namespace AS n ON n.oid = d.defaclnamespace
WHERE pg_catalog.pg_get_userbyid(d.defaclrole) = ANY (%(roles)s)
ORDER BY 1, 2, 3;
