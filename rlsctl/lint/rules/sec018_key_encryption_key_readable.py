from __future__ import annotations

from collections.abc import Iterator

from rlsctl.lint.model import LintModel
from rlsctl.lint.rule import Finding, Rule


class KeyEncryptionKeyReadable(Rule):
    """Every login can read the key-encryption key.

    PostgreSQL has no read protection for custom settings. A key-encryption
    key set in postgresql.conf (or with ALTER SYSTEM) can be read by every
    login with SHOW, and one set with ALTER DATABASE or ALTER ROLE ... SET is
    stored in pg_db_role_setting, which every login can read. With a dump of
    the key store and the ciphertext, any login then decrypts every tenant's
    values offline. Reported for the project's key setting and any setting
    named `*.master_key`.

    Bad:

        CREATE ROLE app_role LOGIN;
        DO $$ BEGIN
            EXECUTE format('ALTER ROLE app_role IN DATABASE %I SET rlsctl.master_key = %L',
                           current_database(), 'a-key-encryption-key-every-login-can-read');
        END $$;

    Good:

        CREATE ROLE app_role LOGIN;
    """

    id = "SEC018"
    name = "key-encryption-key-readable"
    level = "warning"
    hint = (
        "keep the key in a file only the keys role reads (encryption.master_key_file), or pass it in the "
        "application's connection options; then rotate it with rlsctl keys rewrap (docs/encryption.md)"
    )
    sources = ("live",)

    def check(self, model: LintModel) -> Iterator[Finding]:
        for setting, places in sorted(model.key_exposure.items()):
            yield self.finding(
                setting,
                f"the key-encryption key is readable by every login: {'; '.join(places)}",
            )
