-- Rollback of phase 1, step 3.
DROP INDEX "TeamMember_role_idx";
