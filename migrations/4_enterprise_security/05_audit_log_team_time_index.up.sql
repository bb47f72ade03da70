-- Phase 4, step 5: a team's audit page reads the team's latest rows ("teamId" = ?
-- ORDER BY "createdAt" DESC LIMIT n); this index serves it in order, for the
-- application and for the admins' plans that AuditLog's plan hint lets the planner
-- choose (docs/performance.md#plan-hints).
CREATE INDEX "AuditLog_teamId_createdAt_idx" ON "AuditLog"("teamId", "createdAt");
