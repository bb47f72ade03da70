-- Phase 3, step 2: the retention role's policies select and delete usage rows
-- by "lastUsedAt" (400-day window); SPEC s6 wants that column indexed.
CREATE INDEX "UsageAnalytics_lastUsedAt_idx" ON "UsageAnalytics"("lastUsedAt");
