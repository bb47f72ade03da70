"""`rlsctl report`: the compliance report for a security review (docs/report.md).

| module | holds |
|---|---|
| `model` | the report as frozen, JSON-ready data, one shape per section |
| `build` | reads every section from one connection, then judges the controls |
| `rls`, `access`, `encryption`, `retention_audit`, `findings`, `monitoring`, `server` | one section each |
| `tests` | the policy tests of the access section: a `rlsctl test --format json` document, drawn as grids |
| `controls` | the summary's controls, mapped to SOC 2 and ISO/IEC 27001:2022 |
| `queries` | the report's own catalog queries (`sql/*.sql`) |
| `render`, `chart` | JSON, Markdown and self-contained HTML (`templates/`), the inline SVG chart |

The JSON document is described by `report.schema.json`, shipped in the package.
"""

from __future__ import annotations

from rlsctl.report.build import build
from rlsctl.report.model import FORMAT, Report, as_document
from rlsctl.report.render import FAIL_ON, exit_status, render, schema_path
from rlsctl.report.tests import from_json as tests_from_json

__all__ = [
    "FAIL_ON",
    "FORMAT",
    "Report",
    "as_document",
    "build",
    "exit_status",
    "render",
    "schema_path",
    "tests_from_json",
]
