-- Rollback of phase 1, step 1: the team tables and their enum.
DROP TABLE "TeamMember";
DROP TABLE "Team";
DROP TYPE "TeamRole";
