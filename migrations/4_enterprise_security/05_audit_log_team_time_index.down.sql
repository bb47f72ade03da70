-- Rollback of phase 4, step 5.
DROP INDEX "AuditLog_teamId_createdAt_idx";
