-- Documents belong to a team. A published document is readable by anyone,
-- signed in or not (the anon key): it is the team's public page.
CREATE TABLE public.document (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id uuid NOT NULL REFERENCES public.team (id) ON DELETE CASCADE,
    author_id uuid REFERENCES auth.users (id) ON DELETE SET NULL,
    title text NOT NULL,
    body text NOT NULL DEFAULT '',
    published boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX document_team_id_idx ON public.document (team_id);
CREATE INDEX document_author_id_idx ON public.document (author_id);
CREATE INDEX document_published_idx ON public.document (published) WHERE published;
