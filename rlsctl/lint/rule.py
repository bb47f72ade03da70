"""The shape of a lint rule and of its findings.

A rule is a class in its own module under `rlsctl/lint/rules/`. Its docstring
is its documentation: a summary line, why it matters, and a `Bad:` and a
`Good:` SQL example. docs/lint-rules.md is generated from the docstrings, and
the test suite runs both examples on a real database (the bad one must
produce the rule's finding, the good one must not).
"""

from __future__ import annotations

import hashlib
import inspect
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

from rlsctl.lint.model import LintModel, Location

LEVELS = ("info", "warning", "error")
# "file.sql:12", "file.yaml:3:7", "line 12": positions a message may quote, left out of fingerprints
_POSITIONS = re.compile(r"(\.sql|\.ya?ml)(?::\d+){1,2}\b|\blines? \d+(?:-\d+)?\b")


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str
    object: str  # the qualified name of the object at fault
    message: str
    hint: str
    # Where the object is declared (a statement of a SQL file, a key of a policy file); set by the runner from
    # the model, or by a rule that knows better. None for the live catalog. Not part of a finding's identity.
    location: Location | None = field(default=None, compare=False)
    # The indexes that would fix the finding, as (schema, table, columns): RLS010 names them, and
    # `rlsctl lint --write-index-phase` writes them into a migration phase. Not part of its identity.
    indexes: tuple[tuple[str, str, tuple[str, ...]], ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.object}"

    @property
    def fingerprint(self) -> str:
        """A stable identity across runs (SARIF partialFingerprints): the rule, the object and the message
        without the positions it may quote, so moving the declaration to another line keeps it."""
        message = " ".join(_POSITIONS.sub(r"\1", self.message).split())
        return hashlib.sha256("\0".join((self.rule, self.object, message)).encode("utf-8")).hexdigest()


class Rule:
    id: ClassVar[str]
    name: ClassVar[str]
    level: ClassVar[str]
    hint: ClassVar[str]
    # Sources the rule applies to: live catalogs, SQL files, or both.
    sources: ClassVar[tuple[str, ...]] = ("live", "sql", "project")

    def check(self, model: LintModel) -> Iterator[Finding]:
        raise NotImplementedError

    def finding(self, obj: str, message: str, level: str | None = None, hint: str | None = None) -> Finding:
        """A finding at the rule's level, or at `level` where the rule says a case is graver."""
        return Finding(self.id, level or self.level, obj, message, hint or self.hint)

    @classmethod
    def doc(cls) -> str:
        return inspect.getdoc(cls) or ""

    @classmethod
    def summary(cls) -> str:
        return cls.doc().split("\n", 1)[0]

    @classmethod
    def example(cls, label: str) -> str:
        """The SQL under `Bad:` or `Good:` in the docstring (an indented block)."""
        match = re.search(rf"^{label}:\n\n((?:    .*\n|\n)+)", cls.doc() + "\n", re.M)
        if match is None:
            raise ValueError(f"{cls.id} has no {label}: example")
        return textwrap.dedent(match.group(1)).strip() + "\n"
