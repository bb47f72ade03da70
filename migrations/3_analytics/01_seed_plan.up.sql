-- Phase 3: Analytics & Usage Tracking (Week 3), exactly as written in the seed migration plan.
-- Do not edit: additions are separate, named steps in this folder.

-- Create Analytics Tables
CREATE TABLE "UsageAnalytics" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "teamId" TEXT,
    "feature" TEXT NOT NULL,
    "usageCount" INTEGER NOT NULL DEFAULT 0,
    "lastUsedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "metadata" JSONB,
    CONSTRAINT "UsageAnalytics_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "PerformanceMetrics" (
    "id" TEXT NOT NULL,
    "promptId" TEXT NOT NULL,
    "responseTime" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL,
    "errorMessage" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "PerformanceMetrics_pkey" PRIMARY KEY ("id")
);

-- Add indexes
CREATE INDEX "UsageAnalytics_userId_idx" ON "UsageAnalytics"("userId");
CREATE INDEX "UsageAnalytics_teamId_idx" ON "UsageAnalytics"("teamId");
CREATE INDEX "UsageAnalytics_feature_idx" ON "UsageAnalytics"("feature");
CREATE INDEX "PerformanceMetrics_promptId_idx" ON "PerformanceMetrics"("promptId");
CREATE INDEX "PerformanceMetrics_createdAt_idx" ON "PerformanceMetrics"("createdAt");

-- Add foreign keys
ALTER TABLE "UsageAnalytics" ADD CONSTRAINT "UsageAnalytics_userId_fkey" 
    FOREIGN KEY ("userId") REFERENCES "User"("id") ON DELETE CASCADE;
ALTER TABLE "UsageAnalytics" ADD CONSTRAINT "UsageAnalytics_teamId_fkey" 
    FOREIGN KEY ("teamId") REFERENCES "Team"("id") ON DELETE CASCADE;

ALTER TABLE "PerformanceMetrics" ADD CONSTRAINT "PerformanceMetrics_promptId_fkey" 
    FOREIGN KEY ("promptId") REFERENCES "Prompt"("id") ON DELETE CASCADE;
