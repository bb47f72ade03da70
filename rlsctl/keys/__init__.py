"""`rlsctl keys`: column encryption's data keys, batch rewrites, key retirement and API keys.

The commands, for front ends (the CLI, the demo, tests):

| module | holds |
|---|---|
| `session` | `Keys`: one project's encryption on one connection, the keys-role transaction, new data keys |
| `batches` | rotate, encrypt (backfill) and decrypt, in verified, resumable batches |
| `registry` | the columns ever encrypted, key retirement, `forget` |
| `api_keys` | creating an API key |
"""

from __future__ import annotations

from rlsctl.keys.api_keys import create_api_key
from rlsctl.keys.batches import decrypt, encrypt, rotate
from rlsctl.keys.registry import forget, retire
from rlsctl.keys.session import Keys, KeysRun, KeysStatus, Observer

__all__ = [
    "Keys",
    "KeysRun",
    "KeysStatus",
    "Observer",
    "create_api_key",
    "decrypt",
    "encrypt",
    "forget",
    "retire",
    "rotate",
]
