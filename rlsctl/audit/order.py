"""Walk the audit log's one order (docs/audit.md, One order): what `audit_seal()` wrote.

The lanes let concurrent inserts chain without waiting for each other's commit; the order
puts every committed row into one sequence afterwards. Position p's hash is
SHA-256(hash of p - 1 || seq as 8 bytes || the row's own hash), starting from 32 zero bytes
or from the start marker retention's trimming left (seq -1: the position and hash the order
continues from). The row's own hash covers its content (the lane walk checks that), so the
order's last hash covers the whole log in one order.

Two passes, both streamed: `Entries.check_row` meets every row (in seq order, beside the
lane walk) with its entry (the entries sorted by seq); `links` walks the entries by position.
What it catches, with the position named:
- an entry that does not cover its row (`order-edited`), or names another lane;
- a sealed row that is gone, unless retention trimmed it (`order-gone`);
- a row left out of the order below the last sealed row of its lane (`order-hole`);
- a position missing, or one that does not follow the one before (`order-link`).
Rows of a lane after its last sealed one are pending: the next seal takes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rlsctl.declare.audit_spec import GENESIS

MARKER = -1  # the seq of the start marker


@dataclass(frozen=True)
class Entry:
    pos: int
    seq: int
    lane: int
    prev: bytes
    hash: bytes


@dataclass(frozen=True)
class OrderBreak:
    kind: str
    detail: str
    pos: int | None
    seq: int | None
    lane: int | None


@dataclass(frozen=True)
class OrderHead:
    pos: int  # 0: nothing sealed yet
    hash: str  # hex


def link_hash(prev: bytes, seq: int, row_hash: bytes) -> bytes:
    return hashlib.sha256(prev + seq.to_bytes(8, "big", signed=True) + row_hash).digest()


@dataclass
class Entries:
    """The entries sorted by seq, met with the rows as the lane walk streams them."""

    by_seq: Iterator[Entry]
    trimmed: set[tuple[int, int]]  # (lane, seq) of rows retention removed and listed
    covered: dict[int, int]  # lane -> the seq its retention checkpoint covers
    breaks: list[OrderBreak] = field(default_factory=list)
    sealed_max: dict[int, int] = field(default_factory=dict)  # lane -> its last sealed seq
    unsealed: dict[int, list[tuple[int, str | None]]] = field(default_factory=dict)
    sealed: int = 0
    _next: Entry | None = None
    _started: bool = False

    def _peek(self) -> Entry | None:
        if not self._started:
            self._started = True
            self._next = next(self.by_seq, None)
        return self._next

    def _advance(self) -> None:
        self._next = next(self.by_seq, None)

    def check_row(self, seq: int, lane: int, row_hash: bytes, row_id: str | None) -> None:
        """The row at `seq` (rows come in seq order): its entry, and the entries of rows gone before it."""
        while (entry := self._peek()) is not None and entry.seq < seq:
            self._gone(entry)
            self._advance()
        entry = self._peek()
        if entry is None or entry.seq != seq:
            self.unsealed.setdefault(lane, []).append((seq, row_id))
            return
        self._advance()
        self._count(entry)
        if entry.lane != lane:
            self._fail(entry, "order-edited", f"position {entry.pos} names lane {entry.lane} for row {row_id}, "
                       f"which is in lane {lane}")  # fmt: skip
        elif link_hash(entry.prev, seq, row_hash) != entry.hash:
            self._fail(entry, "order-edited", f"position {entry.pos} does not cover row {row_id} (seq {seq}) "
                       "as it is: the row or the order was changed after the seal")  # fmt: skip

    def finish(self) -> None:
        while (entry := self._peek()) is not None:
            self._gone(entry)
            self._advance()
        for lane, rows in sorted(self.unsealed.items()):
            last = self.sealed_max.get(lane)
            for seq, row_id in rows:
                if last is not None and seq < last:
                    self.breaks.append(OrderBreak("order-hole", f"row {row_id} (seq {seq}) of lane {lane} is not in "
                                                  f"the order, though a later row of its lane (seq {last}) is",
                                                  None, seq, lane))  # fmt: skip

    @property
    def pending(self) -> int:
        return sum(
            1 for lane, rows in self.unsealed.items() for seq, _ in rows if seq > self.sealed_max.get(lane, -1)
        )

    def _gone(self, entry: Entry) -> None:
        self._count(entry)
        if (entry.lane, entry.seq) in self.trimmed or entry.seq <= self.covered.get(entry.lane, 0):
            return
        self._fail(entry, "order-gone", f"the row sealed at position {entry.pos} (seq {entry.seq}, lane "
                   f"{entry.lane}) is gone, and retention did not remove it")  # fmt: skip

    def _count(self, entry: Entry) -> None:
        self.sealed += 1
        self.sealed_max[entry.lane] = max(self.sealed_max.get(entry.lane, 0), entry.seq)

    def _fail(self, entry: Entry, kind: str, detail: str) -> None:
        self.breaks.append(OrderBreak(kind, detail, entry.pos, entry.seq, entry.lane))


@dataclass(frozen=True)
class Links:
    head: OrderHead
    breaks: list[OrderBreak]
    start: int  # the start marker's position: retention trimmed the order up to it (0: nothing)
    wanted: bytes | None  # the hash at the position an exported head names, when the walk passed it


def links(by_pos: Iterable[Entry], wanted: int | None = None) -> Links:
    """Walk the entries by position from the start marker (or the genesis): each must follow the
    one before."""
    at_pos, at_hash, start = 0, GENESIS, 0
    breaks: list[OrderBreak] = []
    found: bytes | None = None
    for entry in by_pos:
        if entry.seq == MARKER:
            at_pos, at_hash, start = entry.pos, entry.hash, entry.pos
        elif entry.pos != at_pos + 1:
            breaks.append(OrderBreak("order-link", f"position {entry.pos} follows position {at_pos}: positions "
                                     "between them are gone", entry.pos, entry.seq, entry.lane))  # fmt: skip
        elif entry.prev != at_hash:
            breaks.append(OrderBreak("order-link", f"position {entry.pos} (seq {entry.seq}) does not follow "
                                     f"position {at_pos}: the order was rewritten", entry.pos, entry.seq,
                                     entry.lane))  # fmt: skip
        if entry.seq != MARKER:
            at_pos, at_hash = entry.pos, entry.hash
        if wanted is not None and entry.pos == wanted:
            found = entry.hash
    return Links(OrderHead(at_pos, at_hash.hex() if at_pos else ""), breaks, start, found)


def entries(rows: Iterable[tuple[int, int, int, bytes, bytes]]) -> Iterator[Entry]:
    for pos, seq, lane, prev, digest in rows:
        yield Entry(int(pos), int(seq), int(lane), bytes(prev), bytes(digest))
