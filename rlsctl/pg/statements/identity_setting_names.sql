-- Custom settings named like a session identity (`*.user_id`, `*.tenant_id`, `*.account_id`,
-- `*.org_id`, `*.team_id`, `*.current_user`), set in this session or in a database or role
-- setting: without a project, what lint takes for the setting the policies read the user from.
SELECT s.name FROM pg_catalog.pg_settings AS s
WHERE s.name ~ '\.(user|tenant|account|org|team)_id$|\.current_user$'
UNION
SELECT pg_catalog.split_part(c.entry, '=', 1)
FROM pg_catalog.pg_db_role_setting AS d, pg_catalog.unnest(d.setconfig) AS c(entry)
WHERE pg_catalog.split_part(c.entry, '=', 1) ~ '\.(user|tenant|account|org|team)_id$|\.current_user$'
  AND d.setdatabase IN (0::pg_catalog.oid, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
ORDER BY 1;
