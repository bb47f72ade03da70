-- Code that would run in a session of the keys role on these tables and that rlsctl
-- does not trust: what `rlsctl keys` refuses to run over and drift reports
-- (docs/encryption.md, "What runs in a keys session"). The tables' owner (the owner
-- role, the migrations' login) can always add such things; they cannot be prevented,
-- so they are caught: in a keys session the key-encryption key is a session setting.
--
-- Trusted: PostgreSQL's own functions (pg_catalog) but those that read settings or files,
-- run SQL given as text or send data out; the project's extensions'; and rlsctl's policy
-- helpers and trigger functions (in the helper schema, owned by its definer or keys role,
-- which no login may change). Policies apply to the keys role when they name PUBLIC, it,
-- or any role it is a member of.
-- `tables` the session rewrites, `read_tables` it only reads (there only policies and
-- ON SELECT rules run). Reported, per table and its inheritance children:
--   - a firing trigger, check constraint, index expression or predicate, generated
--     column, or a policy that applies to the keys role, when it runs an untrusted
--     function or operator, or uses a type outside pg_catalog other than an enum;
--   - an inheritance child or partition of a table the session rewrites;
--   - the same on every relation a policy applying to the keys role reads (recursively),
--     where only policies and ON SELECT rules run;
--   - any rule (it rewrites the statement itself);
--   - an encrypted column that is no longer plain text or jsonb.
WITH RECURSIVE keys_role AS (
    SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = %(keys_role)s
),
target AS (
    -- The tables, their inheritance children, and (recursively) every relation a policy
    -- applying to the keys role reads: a keys session only reads those (read_only).
    -- (A relation reached both ways is reported under both; DISTINCT below folds repeats.)
    SELECT c.oid, c.relname::text AS table_name, NOT (c.relname = ANY (%(tables)s)) AS read_only
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND (c.relname = ANY (%(tables)s) OR c.relname = ANY (%(read_tables)s))
    UNION
    SELECT more.oid, more.table_name, more.read_only
    FROM target AS t
    CROSS JOIN LATERAL (
        SELECT i.inhrelid AS oid, t.table_name, t.read_only
        FROM pg_catalog.pg_inherits AS i WHERE i.inhparent = t.oid
        UNION ALL
        SELECT dep.refobjid, dep.refobjid::pg_catalog.regclass::text, true
        FROM pg_catalog.pg_policy AS p
        JOIN pg_catalog.pg_depend AS dep ON dep.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass
                                         AND dep.objid = p.oid
                                         AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
        WHERE p.polrelid = t.oid AND dep.refobjid <> t.oid
          AND EXISTS (SELECT FROM pg_catalog.unnest(p.polroles) AS r(role)
                      WHERE r.role = 0::pg_catalog.oid
                         OR pg_catalog.pg_has_role((SELECT k.oid FROM keys_role AS k), r.role, 'MEMBER'))
    ) AS more
),
code AS (
    SELECT t.table_name, 'trigger' AS what, tg.tgname::text AS name,
           'pg_catalog.pg_trigger'::pg_catalog.regclass AS classid, tg.oid AS objid, t.oid AS relid,
           tg.tgqual::text AS tree
    FROM pg_catalog.pg_trigger AS tg JOIN target AS t ON t.oid = tg.tgrelid
    WHERE NOT tg.tgisinternal AND tg.tgenabled IN ('O', 'A') AND NOT t.read_only
    UNION ALL
    SELECT t.table_name, 'policy', p.polname::text, 'pg_catalog.pg_policy'::pg_catalog.regclass, p.oid, t.oid,
           pg_catalog.concat(p.polqual::text, ' ', p.polwithcheck::text)
    FROM pg_catalog.pg_policy AS p JOIN target AS t ON t.oid = p.polrelid
    WHERE EXISTS (SELECT FROM pg_catalog.unnest(p.polroles) AS r(role)
                  WHERE r.role = 0::pg_catalog.oid
                     OR pg_catalog.pg_has_role((SELECT k.oid FROM keys_role AS k), r.role, 'MEMBER'))
    UNION ALL
    SELECT t.table_name, 'index', ic.relname::text, 'pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid, t.oid,
           pg_catalog.concat(i.indexprs::text, ' ', i.indpred::text)
    FROM pg_catalog.pg_index AS i
    JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
    JOIN target AS t ON t.oid = i.indrelid
    WHERE (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL) AND NOT t.read_only
    UNION ALL
    SELECT t.table_name, 'check constraint', c.conname::text, 'pg_catalog.pg_constraint'::pg_catalog.regclass, c.oid, t.oid,
           c.conbin::text
    FROM pg_catalog.pg_constraint AS c JOIN target AS t ON t.oid = c.conrelid
    WHERE c.contype = 'c' AND NOT t.read_only
    UNION ALL
    SELECT t.table_name, 'generated column', a.attname::text, 'pg_catalog.pg_attrdef'::pg_catalog.regclass, d.oid, t.oid,
           d.adbin::text
    FROM pg_catalog.pg_attribute AS a
    JOIN pg_catalog.pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    JOIN target AS t ON t.oid = a.attrelid
    WHERE a.attgenerated = 's' AND NOT a.attisdropped AND NOT t.read_only
),
called AS (
    -- Every function a code object calls. PostgreSQL records no dependency on its own
    -- (pinned) functions, so those are read from the stored expression tree: a call,
    -- an operator's function, an aggregate or a window function names its oid there.
    SELECT code.table_name, code.what, code.name, found.oid[1]::pg_catalog.oid AS function
    FROM code
    CROSS JOIN LATERAL pg_catalog.regexp_matches(
        code.tree, ':(?:funcid|opfuncid|aggfnoid|winfnoid|hashfuncid|negfuncid) (\d+)', 'g') AS found(oid)
    WHERE code.tree IS NOT NULL
    UNION
    -- and every function it depends on: directly, or through an operator.
    SELECT code.table_name, code.what, code.name, dep.refobjid AS function
    FROM code JOIN pg_catalog.pg_depend AS dep ON dep.classid = code.classid AND dep.objid = code.objid
    WHERE dep.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    UNION
    SELECT code.table_name, code.what, code.name, o.oprcode::pg_catalog.oid
    FROM code
    JOIN pg_catalog.pg_depend AS dep ON dep.classid = code.classid AND dep.objid = code.objid
    JOIN pg_catalog.pg_operator AS o ON o.oid = dep.refobjid
    WHERE dep.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass
    UNION
    SELECT code.table_name, code.what, code.name, tg.tgfoid
    FROM code JOIN pg_catalog.pg_trigger AS tg ON code.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
                                              AND tg.oid = code.objid
),
untrusted AS (
    SELECT called.table_name, called.what, called.name,
           'runs ' || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(p.proname)
           || '(), owned by ' || pg_catalog.pg_get_userbyid(p.proowner)::text AS detail
    FROM called
    JOIN pg_catalog.pg_proc AS p ON p.oid = called.function
    JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
    LEFT JOIN pg_catalog.pg_depend AS member ON member.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                                             AND member.objid = p.oid AND member.deptype = 'e'
    LEFT JOIN pg_catalog.pg_extension AS x ON x.oid = member.refobjid
    WHERE NOT (
        -- PostgreSQL's own, but not those that read settings or files, run SQL given as
        -- text, or send data out of the session: an error message or a notification
        -- would carry what they read.
        (n.nspname = 'pg_catalog' AND NOT (p.proname = ANY (ARRAY[
            'current_setting', 'set_config', 'pg_show_all_settings', 'pg_show_all_file_settings',
            'pg_read_file', 'pg_read_binary_file', 'pg_ls_dir', 'pg_stat_file',
            'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema',
            'cursor_to_xml', 'cursor_to_xmlschema', 'table_to_xml', 'table_to_xmlschema',
            'table_to_xml_and_xmlschema', 'schema_to_xml', 'schema_to_xmlschema',
            'schema_to_xml_and_xmlschema', 'database_to_xml', 'database_to_xmlschema',
            'database_to_xml_and_xmlschema', 'ts_stat', 'ts_rewrite', 'lo_import', 'lo_export',
            'pg_notify', 'pg_logical_emit_message']::pg_catalog.name[])))
        -- the extensions the project declares (pgcrypto), not any other one (dblink...)
        OR COALESCE(x.extname = ANY (%(trusted_extensions)s), false)
        -- rlsctl's policy helpers and trigger functions, which return nothing secret (not
        -- master_key(), data_key() and their kind, which also belong to the keys role)
        OR (n.nspname = %(helper_schema)s AND p.proname = ANY (%(trusted_functions)s)
            AND pg_catalog.pg_get_userbyid(p.proowner)::text = ANY (%(trusted_owners)s))
    )
    UNION ALL
    SELECT code.table_name, code.what, code.name,
           'uses type ' || ty.oid::pg_catalog.regtype::text || ', whose functions or constraints run'
    FROM code
    JOIN pg_catalog.pg_depend AS dep ON dep.classid = code.classid AND dep.objid = code.objid
    JOIN pg_catalog.pg_type AS ty ON ty.oid = dep.refobjid
    JOIN pg_catalog.pg_namespace AS tn ON tn.oid = ty.typnamespace
    -- A domain's constraints, a composite's domains, a range's functions: any type but
    -- PostgreSQL's own and enums (which run no code).
    WHERE dep.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND ty.typtype <> 'e'
      AND tn.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL
    SELECT t.table_name, 'inheritance child', c.relname::text,
           'rlsctl keys rewrites the table itself only (UPDATE ONLY): its children and partitions are not supported'
    FROM target AS t
    JOIN pg_catalog.pg_inherits AS i ON i.inhparent = t.oid
    JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
    WHERE NOT t.read_only
    UNION ALL
    SELECT t.table_name, 'rule', r.rulename::text, 'rewrites every statement on the table'
    FROM pg_catalog.pg_rewrite AS r JOIN target AS t ON t.oid = r.ev_class
    WHERE NOT t.read_only OR r.ev_type = '1'  -- ON SELECT: a view's rule, run on a read
    UNION ALL
    SELECT t.table_name, 'column', a.attname::text,
           'is encrypted but of type ' || pg_catalog.format_type(a.atttypid, a.atttypmod) || ', not text or jsonb'
    FROM pg_catalog.pg_attribute AS a JOIN target AS t ON t.oid = a.attrelid
    WHERE t.table_name || '.' || a.attname::text = ANY (%(columns)s) AND NOT a.attisdropped
      AND a.atttypid NOT IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype)
)
SELECT DISTINCT table_name, what, name, detail FROM untrusted ORDER BY 1, 2, 3, 4;
