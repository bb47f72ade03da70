-- Rollback of phase 1, step 2.
DROP TABLE task;
DROP TYPE task_state;
