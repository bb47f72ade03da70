-- Phase 4, step 4 (issue 16, docs/audit.md): the audit log's hash chain, and its clock in UTC.
--
-- The chain's columns are filled by rlsctl's trigger (rlsctl_chain), never by the
-- application: "chainSeq" orders the log (a sequence of rlsctl's, taken while the
-- row's lane is locked; "id" is the application's and orders nothing), "chainLane"
-- is the lane the row was chained in, "chainPrev" the hash of the lane's previous
-- row and "chainHash" the SHA-256 of "chainPrev" and the row's content. They may be
-- NULL only for rows written before this step (rlsctl audit verify reports those).
ALTER TABLE "AuditLog"
    ADD COLUMN "chainSeq" BIGINT,
    ADD COLUMN "chainLane" INTEGER,
    ADD COLUMN "chainPrev" BYTEA,
    ADD COLUMN "chainHash" BYTEA;
CREATE UNIQUE INDEX "AuditLog_chainSeq_key" ON "AuditLog"("chainSeq");

-- "createdAt" is a timestamp without time zone: CURRENT_TIMESTAMP stored the session's
-- local time, so a session with another TimeZone wrote hours (or days) off what
-- retention compares in UTC. The default is now the server's time in UTC, whatever
-- the session says; roles that may not write the column get it from rlsctl's trigger.
ALTER TABLE "AuditLog" ALTER COLUMN "createdAt" SET DEFAULT timezone('UTC', now());
