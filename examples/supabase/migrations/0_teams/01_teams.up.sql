-- Profiles, teams and memberships. Every user is a row of the platform's
-- auth.users (sign-up is Supabase Auth's job); the owner role needs USAGE on
-- schema auth and REFERENCES on auth.users for the foreign keys (README.md,
-- "Before the first migration").
CREATE TABLE public.profile (
    id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    display_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.team (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    -- Whoever creates a team owns it: the top rank, without a membership row.
    owner_id uuid NOT NULL REFERENCES auth.users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX team_owner_id_idx ON public.team (owner_id);

-- Lowest first, like tenancy.ranks in policies/project.yaml.
CREATE TYPE public.team_role AS ENUM ('member', 'admin', 'owner');

CREATE TABLE public.team_member (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id uuid NOT NULL REFERENCES public.team (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    role public.team_role NOT NULL DEFAULT 'member',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT team_member_team_user_key UNIQUE (team_id, user_id)
);

-- tenant_ids() looks memberships up by user.
CREATE INDEX team_member_user_id_idx ON public.team_member (user_id);
