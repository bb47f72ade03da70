"""`rlsctl audit`: verify the audit log's hash chain, export its head (docs/audit.md).

| module | holds |
|---|---|
| `chain` | the walk: recompute every lane from its checkpoint, compare its end with its head and an exported head |
| `order` | the one order: every sealed position covers its row and the position before it |
| `session` | reading the log and its anchors in one snapshot, as a role that sees every row; sealing |

The triggers, functions and tables the chain needs are declared objects
(`rlsctl.declare.audit`); rlsctl's own operations are recorded by `rlsctl.change.record`.
"""

from __future__ import annotations

from rlsctl.audit.chain import Break, Verdict, head_digest
from rlsctl.audit.session import become_reader, export_head, seal, verify

__all__ = ["Break", "Verdict", "become_reader", "export_head", "head_digest", "seal", "verify"]
