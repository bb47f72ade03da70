-- A test's transaction: standard literal quoting, and the project's schema on the search_path
-- after pg_catalog (where an application session finds its tables), so that a test's own SQL
-- names tables as the application does. pg_catalog comes first and pg_temp last, so nothing in
-- the project's schema can stand in for a built-in (CVE-2018-1058); rlsctl's own statements
-- qualify every name anyway.
SELECT pg_catalog.set_config('standard_conforming_strings', 'on', true),
       pg_catalog.set_config('search_path',
                             'pg_catalog, ' || pg_catalog.quote_ident(%(schema)s) || ', pg_temp', true);
