-- Rollback of phase 0: removes the current schema entirely.
DROP TABLE "Prompt";
DROP TABLE "User";
