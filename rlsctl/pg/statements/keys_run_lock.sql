-- One `rlsctl keys` run per database (rotate, encrypt, decrypt, retire, forget): a
-- session lock, taken without waiting (ids: rlsctl/pg/locks.py).
SELECT pg_catalog.pg_try_advisory_lock(%(lock_class)s, %(lock_id)s) AS locked;
