"""The shape of a lint rule and of its findings.

A rule is a class in its own module under `rlsctl/lint/rules/`. Its docstring
is its documentation: a summary line, why it matters, and a `Bad:` and a
`Good:` SQL example. docs/lint-rules.md is generated from the docstrings, and
the test suite runs both examples on a real database (the bad one must
produce the rule's finding, the good one must not).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from rlsctl.lint.model import LintModel

LEVELS = ("info", "warning", "error")


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str
    object: str  # the qualified name of the object at fault
    message: str
    hint: str

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.object}"


class Rule:
    id: ClassVar[str]
    name: ClassVar[str]
    level: ClassVar[str]
    hint: ClassVar[str]
    # Sources the rule applies to: live catalogs, SQL files, or both.
    sources: ClassVar[tuple[str, ...]] = ("live", "sql", "project")

    def check(self, model: LintModel) -> Iterator[Finding]:
        raise NotImplementedError

    def finding(self, obj: str, message: str) -> Finding:
        return Finding(self.id, self.level, obj, message, self.hint)

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
