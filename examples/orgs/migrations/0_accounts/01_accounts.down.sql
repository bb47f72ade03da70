-- Rollback of phase 0: removes accounts, organisations and memberships.
DROP TABLE org_membership;
DROP TYPE org_level;
DROP TABLE organisation;
DROP TABLE account;
