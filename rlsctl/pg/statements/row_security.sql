-- row_security = off makes a statement that RLS would filter fail instead of
-- silently skipping rows (for roles that do not bypass RLS). Migrations run
-- with it off, so a data change on a secured table cannot quietly do nothing.
SELECT pg_catalog.set_config('row_security', %(value)s, true);
