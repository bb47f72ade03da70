-- Phase 1, step 2 (SPEC s2): team sharing of prompts.
-- A prompt may belong to a team; deleting the team makes its prompts private
-- again instead of deleting them.
ALTER TABLE "Prompt" ADD COLUMN "teamId" TEXT;

CREATE INDEX "Prompt_teamId_idx" ON "Prompt"("teamId");

ALTER TABLE "Prompt" ADD CONSTRAINT "Prompt_teamId_fkey"
    FOREIGN KEY ("teamId") REFERENCES "Team"("id") ON DELETE SET NULL;
