-- Phase 2: Version Control (Week 2), exactly as written in the seed migration plan.
-- Do not edit: additions are separate, named steps in this folder.

-- Create Version Control Tables
CREATE TABLE "PromptVersion" (
    "id" TEXT NOT NULL,
    "promptId" TEXT NOT NULL,
    "content" TEXT NOT NULL,
    "version" INTEGER NOT NULL,
    "changes" JSONB,
    "createdBy" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "PromptVersion_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "PromptApproval" (
    "id" TEXT NOT NULL,
    "promptId" TEXT NOT NULL,
    "versionId" TEXT NOT NULL,
    "approverId" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "comment" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "PromptApproval_pkey" PRIMARY KEY ("id")
);

-- Add indexes
CREATE INDEX "PromptVersion_promptId_idx" ON "PromptVersion"("promptId");
CREATE INDEX "PromptVersion_createdBy_idx" ON "PromptVersion"("createdBy");
CREATE INDEX "PromptApproval_promptId_idx" ON "PromptApproval"("promptId");
CREATE INDEX "PromptApproval_versionId_idx" ON "PromptApproval"("versionId");
CREATE INDEX "PromptApproval_approverId_idx" ON "PromptApproval"("approverId");

-- Add foreign keys
ALTER TABLE "PromptVersion" ADD CONSTRAINT "PromptVersion_promptId_fkey" 
    FOREIGN KEY ("promptId") REFERENCES "Prompt"("id") ON DELETE CASCADE;
ALTER TABLE "PromptVersion" ADD CONSTRAINT "PromptVersion_createdBy_fkey" 
    FOREIGN KEY ("createdBy") REFERENCES "User"("id") ON DELETE CASCADE;

ALTER TABLE "PromptApproval" ADD CONSTRAINT "PromptApproval_promptId_fkey" 
    FOREIGN KEY ("promptId") REFERENCES "Prompt"("id") ON DELETE CASCADE;
ALTER TABLE "PromptApproval" ADD CONSTRAINT "PromptApproval_versionId_fkey" 
    FOREIGN KEY ("versionId") REFERENCES "PromptVersion"("id") ON DELETE CASCADE;
ALTER TABLE "PromptApproval" ADD CONSTRAINT "PromptApproval_approverId_fkey" 
    FOREIGN KEY ("approverId") REFERENCES "User"("id") ON DELETE CASCADE;
