-- Whether rlsctl can record one of its own operations in the audit log here: the
-- recording function exists (apply made it) and this session may execute it.
SELECT f.p IS NOT NULL AS present,
       f.p IS NOT NULL AND pg_catalog.has_function_privilege(f.p, 'EXECUTE') AS allowed
FROM (SELECT pg_catalog.to_regprocedure(%(signature)s) AS p) AS f;
