-- Rollback of phase 3, step 2.
DROP INDEX "UsageAnalytics_lastUsedAt_idx";
