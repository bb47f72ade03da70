-- Rollback of phase 4, step 3: the seed's plain index comes back.
CREATE INDEX "ApiKey_hashedKey_idx" ON "ApiKey"("hashedKey");
DROP INDEX "ApiKey_hashedKey_key";
