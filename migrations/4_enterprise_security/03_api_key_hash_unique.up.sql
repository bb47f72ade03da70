-- Phase 4, step 3: one key per hash. The seed's index on "hashedKey" is not
-- unique, so an admin of one team who learned another team's hash (from a
-- dump, say) could insert a second row with it and make that key ambiguous:
-- rlsctl.authenticate_api_key refuses an ambiguous hash, which would disable
-- the other team's key. A unique index forbids the duplicate; it also serves
-- the lookup, so the seed's plain index is dropped as redundant.
CREATE UNIQUE INDEX "ApiKey_hashedKey_key" ON "ApiKey"("hashedKey");
DROP INDEX "ApiKey_hashedKey_idx";
