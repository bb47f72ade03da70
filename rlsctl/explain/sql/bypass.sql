-- The baseline runs as the connecting role with row_security off: a statement that RLS would
-- filter for it raises instead of quietly reading fewer rows (the role must bypass RLS).
SELECT pg_catalog.set_config('row_security', 'off', true);
