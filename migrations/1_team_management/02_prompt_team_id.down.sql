-- Rollback of phase 1, step 2: prompts stop belonging to teams.
ALTER TABLE "Prompt" DROP CONSTRAINT "Prompt_teamId_fkey";
DROP INDEX "Prompt_teamId_idx";
ALTER TABLE "Prompt" DROP COLUMN "teamId";
