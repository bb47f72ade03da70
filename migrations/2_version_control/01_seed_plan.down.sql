-- Rollback of phase 2: version control tables.
DROP TABLE "PromptApproval";
DROP TABLE "PromptVersion";
