-- Until the savepoint ends: plan prepared statements for any values (the generic plan), as
-- PostgreSQL does from a prepared statement's sixth execution when that plan looks no costlier.
SELECT pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true);
