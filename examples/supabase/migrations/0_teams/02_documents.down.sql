-- Rollback of step 02: documents.
DROP TABLE public.document;
