"""The package's layers hold: import-linter's contracts (pyproject.toml) pass on the tree, and each
one fails on a copy of the package with a violation planted in it; only the CLI imports inside
functions (to start at once), and listing the commands loads none of the library's dependencies."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# What a command's modules need and `rlsctl --help` must not load.
HEAVY = ("psycopg", "pydantic", "pglast", "sqlglot", "jinja2", "rich", "yaml")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the package under `root` (found first on the path)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_contracts_hold_on_the_tree():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.fixture(scope="module")
def copy_of_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planted")
    shutil.copytree(ROOT / "rlsctl", root / "rlsctl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


PLANTS = {
    # contract id -> (file, line added at its end): one violation each
    "layers": ("rlsctl/pg/sql.py", "from rlsctl.cli import output  # planted: an upward import"),
    "acyclic": ("rlsctl/declare/expr.py", "from rlsctl.declare import bind  # planted: bind imports expr"),
    "policy-schema-no-pg": ("rlsctl/schema/ddl.py", "from rlsctl.pg import sql  # planted"),
    "offline": ("rlsctl/state/objects.py", "import psycopg  # planted"),
    "rules": ("rlsctl/lint/rules/rls001_reachable_without_rls.py", "import psycopg  # planted"),
}


@pytest.mark.parametrize("contract", sorted(PLANTS))
def test_each_contract_fails_on_a_planted_violation(copy_of_package: Path, contract: str):
    relative, line = PLANTS[contract]
    path = copy_of_package / relative
    original = path.read_text()
    path.write_text(original + "\n" + line + "\n")
    try:
        result = lint_imports(copy_of_package)
    finally:
        path.write_text(original)
    assert result.returncode == 1, result.stdout
    broken = [text for text in result.stdout.splitlines() if text.endswith(" BROKEN")]
    names = {contract_name(contract)}
    assert names <= {text.removesuffix(" BROKEN").strip() for text in broken}, result.stdout


def contract_name(contract_id: str) -> str:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return next(item["name"] for item in config if item["id"] == contract_id)


# Where rlsctl may be imported inside a function: the CLI, so that it starts at once, and the
# pytest plugin module, which pytest loads into every session wherever rlsctl is installed: its
# fixture imports the database code, so that a session that never uses it loads none of it.
LAZY_IMPORTS_ALLOWED = (("cli",), ("testing", "plugin.py"))


def function_level_imports(package: Path) -> list[str]:
    """`file:line` of every import of rlsctl inside a function (or class) body, outside
    LAZY_IMPORTS_ALLOWED: anywhere else such an import hides a dependency, or a cycle, from the
    reader and the linter.
    """
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if any(parts[: len(allowed)] == allowed for allowed in LAZY_IMPORTS_ALLOWED):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("rlsctl"):
                    found.append(f"{path.relative_to(package.parent)}:{inner.lineno}")
                if isinstance(inner, ast.Import) and any(a.name.startswith("rlsctl") for a in inner.names):
                    found.append(f"{path.relative_to(package.parent)}:{inner.lineno}")
    return found


def test_no_function_level_imports_outside_the_cli():
    assert function_level_imports(ROOT / "rlsctl") == []


def test_a_function_level_import_is_found(copy_of_package: Path):
    path = copy_of_package / "rlsctl/declare/bind.py"
    original = path.read_text()
    path.write_text(original + "\n\ndef planted() -> None:\n    from rlsctl.declare import compile  # noqa\n")
    try:
        assert function_level_imports(copy_of_package / "rlsctl") == [
            f"rlsctl/declare/bind.py:{len(original.splitlines()) + 4}"
        ]
    finally:
        path.write_text(original)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["keys", "--help"]])
def test_listing_the_commands_loads_none_of_the_librarys_dependencies(args: list[str]):
    probe = (
        "import json, sys\n"
        "from rlsctl.cli.main import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(HEAVY) + ")))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"rlsctl {' '.join(args)} loaded {loaded}"


def test_a_command_still_loads_what_it_needs():
    """The probe above can see a heavy import: running a real command loads them."""
    probe = (
        "import json, sys\n"
        "from rlsctl.cli.main import main\n"
        "try:\n    main(['render', '--phase', '0'])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(HEAVY) + ")))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert {"jinja2", "pydantic", "pglast"} <= loaded
