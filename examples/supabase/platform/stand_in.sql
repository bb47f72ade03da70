-- A stand-in for what Supabase sets up in every project's database before your
-- first migration, for trying this example on a plain PostgreSQL (15 or later)
-- and for rlsctl's own tests (tests/test_supabase.py). Run it once, as a
-- superuser, in an empty database:
--
--     psql -v ON_ERROR_STOP=1 -d "$DSN" -f examples/supabase/platform/stand_in.sql
--
-- It reproduces only what the example touches: the API roles, the auth schema
-- with auth.users and the functions policies call, a storage schema, and pgcrypto
-- in the extensions schema, each owned by a platform role. Never run it on a
-- Supabase project: the platform has all of this already.
--
-- Roles are cluster-wide: on a shared server, run it once per cluster (a second
-- run fails on CREATE ROLE).

-- The platform's administrator, which owns its schemas (supabase_admin on the platform).
CREATE ROLE supabase_admin NOLOGIN;

-- The API roles. PostgREST logs in as authenticator and switches, per request, to
-- anon (no JWT, or the anon key), authenticated (a signed-in user's JWT) or
-- service_role (the service key): service_role skips row-level security.
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT;
GRANT anon, authenticated, service_role TO authenticator;

-- The project's schema is served over the API: the API roles may use it, and what
-- the platform's own login creates there is open to them by default.
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;

-- Extensions live in their own schema, which only the platform can write to.
CREATE SCHEMA extensions AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA extensions TO PUBLIC;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;

-- auth: the users who signed up, and the identity of the request. PostgREST puts the
-- JWT's claims in request.jwt.claims (JSON); older versions set request.jwt.claim.sub
-- and the like one by one. auth.uid() reads either.
CREATE SCHEMA auth AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

CREATE TABLE auth.users (
    id uuid PRIMARY KEY,
    email text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE auth.users OWNER TO supabase_admin;

CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
    )::uuid
$$;

CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
    )::text
$$;

CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;

ALTER FUNCTION auth.uid() OWNER TO supabase_admin;
ALTER FUNCTION auth.role() OWNER TO supabase_admin;
ALTER FUNCTION auth.jwt() OWNER TO supabase_admin;

-- storage: buckets of files, and the helpers storage policies call.
CREATE SCHEMA storage AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role;

CREATE TABLE storage.buckets (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    public boolean NOT NULL DEFAULT false
);
CREATE TABLE storage.objects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bucket_id text REFERENCES storage.buckets (id),
    name text,
    owner uuid,
    created_at timestamptz DEFAULT now()
);
CREATE UNIQUE INDEX bucketid_objname ON storage.objects (bucket_id, name);
ALTER TABLE storage.buckets OWNER TO supabase_admin;
ALTER TABLE storage.objects OWNER TO supabase_admin;

CREATE FUNCTION storage.foldername(name text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    _parts text[];
BEGIN
    SELECT string_to_array(name, '/') INTO _parts;
    RETURN _parts[1:array_length(_parts, 1) - 1];
END
$$;

CREATE FUNCTION storage.filename(name text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    _parts text[];
BEGIN
    SELECT string_to_array(name, '/') INTO _parts;
    RETURN _parts[array_length(_parts, 1)];
END
$$;

ALTER FUNCTION storage.foldername(text) OWNER TO supabase_admin;
ALTER FUNCTION storage.filename(text) OWNER TO supabase_admin;
