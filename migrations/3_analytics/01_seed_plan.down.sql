-- Rollback of phase 3: analytics tables.
DROP TABLE "PerformanceMetrics";
DROP TABLE "UsageAnalytics";
