-- Phase 1, step 2: tasks belong to a project, hence (two hops away) to an
-- organisation; they have no organisation column of their own.
CREATE TYPE task_state AS ENUM ('todo', 'doing', 'done');

CREATE TABLE task (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid NOT NULL REFERENCES project (id) ON DELETE CASCADE,
    assignee_id uuid REFERENCES account (id) ON DELETE SET NULL,
    title text NOT NULL,
    state task_state NOT NULL DEFAULT 'todo',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX task_project_id_idx ON task (project_id);
CREATE INDEX task_assignee_id_idx ON task (assignee_id);
