-- Which server and database the report reads, and as whom.
SELECT pg_catalog.current_setting('server_version') AS server_version,
       pg_catalog.current_setting('server_version_num')::integer AS server_version_num,
       pg_catalog.current_database() AS database,
       current_user AS connected_as;
