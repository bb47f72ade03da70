-- Migrations name tables without a schema: they land in the project's schema.
SELECT pg_catalog.set_config('search_path', %(path)s, true);
