-- The users rlsctl test acts as (policies/fixtures.yaml), as if they had signed up:
-- the tables of this example reference auth.users, so their fixture rows need these.
-- Run it as a role that may write auth.users (supabase_admin, a superuser), on the
-- stand-in or on a local or branch Supabase database; never on production.
INSERT INTO auth.users (id, email) VALUES
    ('00000000-0000-4000-8000-00000000a11c', 'alice@acme.test'),
    ('00000000-0000-4000-8000-000000000b0b', 'bob@acme.test'),
    ('00000000-0000-4000-8000-00000000ca01', 'carol@acme.test'),
    ('00000000-0000-4000-8000-00000000da7e', 'dave@globex.test'),
    ('00000000-0000-4000-8000-00000000e1e1', 'erin@example.test'),
    ('00000000-0000-4000-8000-00000000ffff', 'mallory@example.test'),
    ('00000000-0000-4000-8000-00000000c0de', 'newcomer@example.test')
ON CONFLICT (id) DO NOTHING;
