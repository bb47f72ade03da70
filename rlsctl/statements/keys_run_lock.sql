-- One `rlsctl keys` run per database (rotate, encrypt, decrypt, retire): a session
-- lock, taken without waiting. Class "rlsc", 3 (1 is apply's, 2 the key lock).
SELECT pg_catalog.pg_try_advisory_lock(1919710051, 3) AS locked;
