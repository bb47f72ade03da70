"""`rlsctl keys`: column encryption's data keys, batch rewrites, key retirement and API keys.

The commands, for front ends (the CLI, the demo, tests):

| module | holds |
|---|---|
| `session` | `Keys`: one project's encryption on one connection, the keys-role transaction, new data keys |
| `batches` | rotate, encrypt (backfill) and decrypt, in verified, resumable batches |
| `registry` | the columns ever encrypted, key retirement, `forget` |
| `api_keys` | creating, listing and revoking API keys; the scopes the policies know |
"""

from __future__ import annotations

from rlsctl.keys.api_keys import ApiKeyInfo, create_api_key, declared_scopes, list_api_keys, revoke_api_key
from rlsctl.keys.batches import decrypt, encrypt, rotate
from rlsctl.keys.registry import forget, retire
from rlsctl.keys.session import Keys, KeysRun, KeysStatus, Observer

__all__ = [
    "ApiKeyInfo",
    "Keys",
    "KeysRun",
    "KeysStatus",
    "Observer",
    "create_api_key",
    "declared_scopes",
    "decrypt",
    "encrypt",
    "forget",
    "list_api_keys",
    "retire",
    "revoke_api_key",
    "rotate",
]
