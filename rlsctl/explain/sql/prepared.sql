-- Whether the session still holds a prepared statement of this name (psycopg deallocates all of
-- a session's prepared statements at a rollback once it has prepared some of its own).
SELECT s.name FROM pg_catalog.pg_prepared_statements AS s WHERE s.name = %(name)s;
