-- Before each declared statement: standard literal quoting, the way rlsctl parsed the statement
-- (one statement, checked offline). A declared parameter statement may have turned it off; with
-- backslash escapes the server could read more statements into the same text.
SELECT pg_catalog.set_config('standard_conforming_strings', 'on', true);
