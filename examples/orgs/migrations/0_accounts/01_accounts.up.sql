-- Phase 0: accounts, organisations (the tenants) and memberships.
-- The organisation has no owner column: every right in an organisation comes
-- from an org_membership row and its level.
CREATE TABLE account (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE,
    display_name text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organisation (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    slug text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Lowest first, like tenancy.ranks in policies/project.yaml.
CREATE TYPE org_level AS ENUM ('viewer', 'editor', 'admin');

CREATE TABLE org_membership (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES account (id) ON DELETE CASCADE,
    level org_level NOT NULL DEFAULT 'viewer',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT org_membership_org_account_key UNIQUE (org_id, account_id)
);

-- tenant_ids() looks memberships up by account.
CREATE INDEX org_membership_account_id_idx ON org_membership (account_id);
