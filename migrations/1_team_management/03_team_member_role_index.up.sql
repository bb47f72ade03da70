-- Phase 1, step 3: policies filter memberships on "role" (an ADMIN may not
-- touch OWNER rows), and SPEC s6 wants every column a policy filters on indexed.
CREATE INDEX "TeamMember_role_idx" ON "TeamMember"("role");
