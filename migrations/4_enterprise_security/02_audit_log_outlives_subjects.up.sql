-- Phase 4, step 2 (SPEC s2): the audit log outlives the users and teams it names.
-- The seed's ON DELETE CASCADE foreign keys would erase a deleted user's or
-- team's history (or collide with the append-only guard). The indexes stay,
-- so lookups by user and team remain fast.
ALTER TABLE "AuditLog" DROP CONSTRAINT "AuditLog_userId_fkey";
ALTER TABLE "AuditLog" DROP CONSTRAINT "AuditLog_teamId_fkey";
