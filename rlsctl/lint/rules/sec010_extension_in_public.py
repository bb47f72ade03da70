from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class ExtensionInPublic(Rule):
    """An extension is installed in schema public.

    Its functions and operators land in the schema every default search_path
    includes, ahead of same-named objects further down the path, and they
    are executable by PUBLIC unless revoked one by one. Install
    extensions in a schema of their own and grant USAGE on it, and EXECUTE
    on what is needed, to the roles that use them.

    Bad:

        CREATE EXTENSION pgcrypto SCHEMA public;

    Good:

        CREATE SCHEMA ext;
        CREATE EXTENSION pgcrypto SCHEMA ext;
        REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ext FROM PUBLIC;
    """

    id = "SEC010"
    name = "extension-in-public"
    level = "warning"
    hint = "ALTER EXTENSION ... SET SCHEMA <a dedicated schema> (if relocatable; else drop and recreate WITH SCHEMA)"

    def check(self, model: LintModel) -> Iterator[Finding]:
        for extension, schema in sorted(model.extensions.items()):
            if schema == "public":
                yield self.finding(
                    extension,
                    f"extension {extension} is installed in schema public: its functions and operators are on "
                    "every default search_path and executable by PUBLIC",
                )
