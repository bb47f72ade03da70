SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL AS present;
