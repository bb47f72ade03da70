"""The rule catalogue: one rule per module, discovered at import."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from rlsctl.lint.rule import Rule


@cache
def all_rules() -> tuple[type[Rule], ...]:
    found: list[type[Rule]] = []
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Rule)
                and value is not Rule
                and value.__module__ == module.__name__
            ):
                found.append(value)
    ids = [rule.id for rule in found]
    duplicates = {rule_id for rule_id in ids if ids.count(rule_id) > 1}
    if duplicates:
        raise RuntimeError(f"duplicate lint rule ids: {sorted(duplicates)}")
    return tuple(sorted(found, key=lambda rule: rule.id))
