-- The role the transaction acts as now ('none': the connecting role), to return to it afterwards.
SELECT pg_catalog.current_setting('role') AS role;
