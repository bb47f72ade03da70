-- Rollback of step 01: profiles, teams and memberships.
DROP TABLE public.team_member;
DROP TYPE public.team_role;
DROP TABLE public.team;
DROP TABLE public.profile;
