"""Walk the audit log's hash chain (docs/audit.md): `rlsctl audit verify` and `export-head`.

Every row's hash is SHA-256(prev || content), where `prev` is the hash of the row before
it in its lane (32 zero bytes for a lane's first row) and `content` the bytes the chain
trigger hashed (objects/audit_bodies.sql.j2, `content`: the server computes them again
here with the same expression). The walk recomputes each lane from its checkpoint (what
retention trimmed off the old end), with the rows retention removed ahead of an older row
(`audit_trimmed`) standing in for those rows, and compares its end with the lane's head.

What it catches, with the first broken row named:
- a row edited: its hash no longer covers its content (`edited`);
- a row deleted from the middle, or a row inserted out of order: the next row does not
  follow the one before it (`link`, `order`);
- the newest rows of a lane deleted, or rows added around the trigger after them: the
  lane's end is not its head (`tail`, `past-head`);
- rows without a link (`unchained`).
Whoever can disable triggers can also recompute every hash and head: the exported head
(`compare_head`), kept outside the database, catches that.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rlsctl.audit.order import OrderHead
from rlsctl.declare.audit_spec import GENESIS

HEAD_FORMAT = "rlsctl-audit-head/1"
NOTHING_ADDED = "no row was added since the head was exported"


@dataclass(frozen=True)
class Item:
    """A row of the log, or a row retention removed (listed in audit_trimmed: no id, no content)."""

    seq: int
    lane: int
    prev: bytes
    hash: bytes
    id: str | None = None
    content: bytes | None = None


@dataclass(frozen=True)
class Checkpoint:
    lane: int
    seq: int
    hash: bytes
    removed: int
    cutoff: str | None


@dataclass(frozen=True)
class Anchors:
    """What the chain trigger and retention wrote beside the log (audit_anchors())."""

    lanes: dict[int, tuple[int, bytes]]  # lane -> (seq, hash) of its last row
    checkpoints: dict[int, Checkpoint]
    trimmed: tuple[Item, ...]


@dataclass(frozen=True)
class Break:
    kind: str  # unchained, edited, link, order, tail, past-head, lane, rewritten, gone, head
    detail: str
    seq: int | None = None
    lane: int | None = None
    id: str | None = None

    @property
    def row(self) -> str:
        if self.id is not None:
            return f"row {self.id} (seq {self.seq}, lane {self.lane})"
        if self.seq is not None:
            return f"seq {self.seq} of lane {self.lane}"
        return f"lane {self.lane}"


@dataclass(frozen=True)
class LaneHead:
    lane: int
    seq: int
    hash: str  # hex


@dataclass(frozen=True)
class Verdict:
    log: str
    rows: int
    heads: tuple[LaneHead, ...]
    checkpoints: tuple[Checkpoint, ...]
    trimmed: int
    breaks: tuple[Break, ...]
    notes: tuple[str, ...] = ()
    order: OrderHead | None = None  # the one order's last position (rlsctl.audit.order)
    sealed: int = 0  # rows in the order
    pending: int = 0  # rows committed since the last seal: the next one takes them

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def first(self) -> Break | None:
        return self.breaks[0] if self.breaks else None

    @property
    def head(self) -> str:
        return head_digest(self.log, self.heads, self.order)


def head_digest(log: str, heads: Iterable[LaneHead], order: OrderHead | None = None) -> str:
    """One hash for the ends of every lane and of the order: what `export-head` writes and verify prints."""
    lines = "".join(f"{head.lane} {head.seq} {head.hash}\n" for head in sorted(heads, key=lambda h: h.lane))
    if order is not None and order.pos:
        lines += f"order {order.pos} {order.hash}\n"
    return hashlib.sha256(f"{HEAD_FORMAT}\n{log}\n{lines}".encode()).hexdigest()


def anchors_from(data: dict[str, Any]) -> Anchors:
    """The JSON audit_anchors() returns (hashes in hex)."""
    lanes = {int(lane): (int(seq), bytes.fromhex(digest)) for lane, seq, digest in data["lanes"]}
    checkpoints = {
        int(lane): Checkpoint(int(lane), int(seq), bytes.fromhex(digest), int(removed), cutoff)
        for lane, seq, digest, removed, cutoff in data["checkpoints"]
    }
    trimmed = tuple(
        Item(int(seq), int(lane), bytes.fromhex(prev), bytes.fromhex(digest))
        for lane, seq, prev, digest in data["trimmed"]
    )
    return Anchors(lanes, checkpoints, trimmed)


@dataclass
class _Lane:
    """Where the walk is in one lane: the hash the next item must follow, and its seq."""

    expected: bytes
    seq: int
    id: str | None = None
    pending: deque[Item] = field(default_factory=deque)  # trimmed rows not reached yet


@dataclass
class _Walk:
    anchors: Anchors
    wanted: set[tuple[int, int]]  # (lane, seq) whose hash an exported head names
    lanes: dict[int, _Lane] = field(default_factory=dict)
    breaks: list[Break] = field(default_factory=list)
    seen: dict[tuple[int, int], tuple[bytes, str | None]] = field(default_factory=dict)
    rows: int = 0

    def lane(self, number: int) -> _Lane:
        if number not in self.lanes:
            checkpoint = self.anchors.checkpoints.get(number)
            start = _Lane(checkpoint.hash, checkpoint.seq) if checkpoint else _Lane(GENESIS, 0)
            start.pending.extend(item for item in self.anchors.trimmed if item.lane == number)
            self.lanes[number] = start
        return self.lanes[number]

    def row(self, item: Item) -> None:
        self.rows += 1
        lane = self.lane(item.lane)
        while lane.pending and lane.pending[0].seq < item.seq:
            self.step(lane, lane.pending.popleft())
        self.step(lane, item)

    def step(self, lane: _Lane, item: Item) -> None:
        what = f"row {item.id}" if item.id is not None else f"the trimmed row at seq {item.seq}"
        if item.seq <= lane.seq:
            self.fail(item, "order", f"{what} has seq {item.seq}, not after seq {lane.seq} of its lane's previous row")
        elif item.prev != lane.expected:
            after = f"row {lane.id}" if lane.id is not None else f"seq {lane.seq}"
            self.fail(item, "link", f"{what} does not follow {after} of lane {item.lane}: a row was deleted before "
                      "it or inserted out of order, or the row before it was rewritten")  # fmt: skip
        if item.content is not None and hashlib.sha256(item.prev + item.content).digest() != item.hash:
            self.fail(item, "edited", f"{what} was changed after it was written: its hash no longer covers it")
        if (item.lane, item.seq) in self.wanted:
            self.seen[(item.lane, item.seq)] = (item.hash, item.id)
        lane.expected, lane.seq, lane.id = item.hash, item.seq, item.id

    def fail(self, item: Item, kind: str, detail: str) -> None:
        self.breaks.append(Break(kind, detail, item.seq, item.lane, item.id))

    def finish(self) -> None:
        for number in sorted(set(self.anchors.lanes) | set(self.lanes)):
            lane = self.lane(number)
            while lane.pending:
                self.step(lane, lane.pending.popleft())
            self.ends(number, lane)

    def ends(self, number: int, lane: _Lane) -> None:
        head = self.anchors.lanes.get(number)
        if head is None:
            self.breaks.append(Break("lane", f"lane {number} was never opened by the chain trigger", lane.seq,
                                     number, lane.id))  # fmt: skip
        elif lane.seq < head[0]:
            self.breaks.append(Break("tail", f"the newest rows of lane {number} are gone: its head is seq {head[0]}, "
                                     f"the log ends at seq {lane.seq}", head[0], number))  # fmt: skip
        elif lane.seq > head[0]:
            detail = f"row {lane.id} comes after the head of lane {number} (seq {head[0]}): written around the trigger"
            self.breaks.append(Break("past-head", detail, lane.seq, number, lane.id))
        elif lane.expected != head[1]:
            self.breaks.append(Break("head", f"lane {number} ends at seq {lane.seq} with another hash than its head "
                                     "records", lane.seq, number, lane.id))  # fmt: skip


def covered(anchors: Anchors) -> tuple[set[tuple[int, int]], dict[int, int]]:
    """What retention removed: the rows it listed (lane, seq), and per lane the seq its checkpoint covers."""
    listed = {(item.lane, item.seq) for item in anchors.trimmed}
    return listed, {lane: checkpoint.seq for lane, checkpoint in anchors.checkpoints.items()}


def walk(
    log: str,
    rows: Iterable[tuple[str, int | None, int | None, bytes | None, bytes | None, bytes]],
    anchors: Anchors,
    expected: dict[str, Any] | None = None,
) -> Verdict:
    """Verify the chain. `rows`: (id, seq, lane, prev, hash, content), ordered by seq, rows
    without a link first; `expected`: a head `export-head` wrote earlier."""
    wanted = {(int(lane), int(seq)) for lane, seq, _ in (expected or {}).get("lanes", [])}
    state = _Walk(anchors, wanted)
    unchained: list[Break] = []
    for row_id, seq, lane, prev, digest, content in rows:
        if seq is None or lane is None or prev is None or digest is None:
            state.rows += 1
            unchained.append(Break("unchained", f"row {row_id} has no chain link: written before the chain "
                                   "existed, or around its trigger", None, lane, row_id))  # fmt: skip
            continue
        state.row(Item(seq, lane, bytes(prev), bytes(digest), row_id, bytes(content)))
    state.finish()
    heads = tuple(LaneHead(n, lane.seq, lane.expected.hex()) for n, lane in sorted(state.lanes.items()))
    breaks = unchained + sorted(state.breaks, key=lambda b: (b.seq if b.seq is not None else -1, b.lane or 0))
    notes: list[str] = []
    if expected is not None:
        head_breaks, notes = compare_head(log, expected, heads, anchors, state.seen)
        breaks += head_breaks
    checkpoints = tuple(anchors.checkpoints[n] for n in sorted(anchors.checkpoints))
    return Verdict(log, state.rows, heads, checkpoints, len(anchors.trimmed), tuple(breaks), tuple(notes))


def compare_head(
    log: str,
    expected: dict[str, Any],
    heads: tuple[LaneHead, ...],
    anchors: Anchors,
    seen: dict[tuple[int, int], tuple[bytes, str | None]],
) -> tuple[list[Break], list[str]]:
    """Whether the chain still holds what an exported head vouched for: in each lane, the row at
    the head's seq still has the head's hash (so nothing before it changed, the chain being
    intact); rows added since are the exported head's future. A head older than retention's
    checkpoint of its lane cannot be checked there: those rows are gone by design."""
    if expected.get("log") not in (None, log):
        return [Break("head", f"the exported head is of {expected.get('log')!r}, not {log!r}")], []
    breaks: list[Break] = []
    notes: list[str] = []
    trimmed = {(item.lane, item.seq) for item in anchors.trimmed}
    for lane, seq, digest in expected.get("lanes", []):
        lane, seq = int(lane), int(seq)
        checkpoint = anchors.checkpoints.get(lane)
        if checkpoint is not None and seq < checkpoint.seq:
            notes.append(f"lane {lane}: the exported head (seq {seq}) is older than retention's checkpoint "
                         f"(seq {checkpoint.seq}): those rows were trimmed, there is nothing to compare")  # fmt: skip
            continue
        if (lane, seq) in trimmed or (checkpoint is not None and seq == checkpoint.seq):
            # Compared below with the hash retention kept of it: the row itself is gone by design.
            notes.append(f"lane {lane}: the exported head's row (seq {seq}) was trimmed by retention: "
                         "compared with the hash retention kept of it")  # fmt: skip
        found: tuple[bytes, str | None] | None
        if checkpoint is not None and seq == checkpoint.seq:
            found = (checkpoint.hash, None)
        elif seq == 0:
            found = (GENESIS, None)
        else:
            found = seen.get((lane, seq))
        if found is None:
            breaks.append(Break("gone", f"the row the exported head ends at in lane {lane} (seq {seq}) is gone",
                                seq, lane))  # fmt: skip
        elif found[0].hex() != digest:
            detail = (f"lane {lane} at seq {seq} has hash {found[0].hex()[:16]}…, the exported head says "
                      f"{str(digest)[:16]}…: the chain was rewritten")  # fmt: skip
            breaks.append(Break("rewritten", detail, seq, lane, found[1]))
    if not breaks and expected.get("head") == head_digest(log, heads):
        notes.append(NOTHING_ADDED)  # a head of lanes alone: rlsctl.audit.session weighs the order in
    return breaks, notes


def head_document(verdict: Verdict, where: str, exported_at: str) -> dict[str, Any]:
    """What `export-head` writes: keep it outside the database (docs/audit.md, Where to keep heads)."""
    return {
        "format": HEAD_FORMAT,
        "log": verdict.log,
        "database": where,
        "exported_at": exported_at,
        "rows": verdict.rows,
        "head": verdict.head,
        "lanes": [[head.lane, head.seq, head.hash] for head in verdict.heads],
        "order": [verdict.order.pos, verdict.order.hash] if verdict.order is not None and verdict.order.pos else None,
    }


def rows_in_batches(cursor: Any, size: int = 5000) -> Iterator[tuple[Any, ...]]:
    while True:
        batch = cursor.fetchmany(size)
        if not batch:
            return
        yield from batch
