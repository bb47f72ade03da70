-- Rollback of phase 4, step 4: the seed's default comes back and the chain goes.
ALTER TABLE "AuditLog" ALTER COLUMN "createdAt" SET DEFAULT CURRENT_TIMESTAMP;
DROP INDEX "AuditLog_chainSeq_key";
ALTER TABLE "AuditLog"
    DROP COLUMN "chainHash",
    DROP COLUMN "chainPrev",
    DROP COLUMN "chainLane",
    DROP COLUMN "chainSeq";
