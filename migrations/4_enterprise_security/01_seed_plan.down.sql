-- Rollback of phase 4, step 1: API keys and the audit log.
DROP TABLE "AuditLog";
DROP TABLE "ApiKey";
