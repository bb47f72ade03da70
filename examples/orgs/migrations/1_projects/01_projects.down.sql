-- Rollback of phase 1, step 1.
DROP TABLE project;
