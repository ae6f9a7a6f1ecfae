"""The engine must run without Home Assistant: training loads it by path as `cry_detector_engine`."""

from __future__ import annotations

import ast
import json
from pathlib import Path
import subprocess
import sys

import pytest

ENGINE = (
    Path(__file__).resolve().parents[2]
    / "custom_components"
    / "cry_detector"
    / "engine"
)
ENGINE_FILES = sorted(p for p in ENGINE.rglob("*.py") if "__pycache__" not in p.parts)
FORBIDDEN_ROOTS = ("homeassistant", "custom_components")

LOAD_BY_PATH = """
import importlib, importlib.util, json, pathlib, sys
for blocked in ("homeassistant", "custom_components"):
    sys.modules[blocked] = None  # any import of them now raises ImportError
engine = pathlib.Path(sys.argv[1])
spec = importlib.util.spec_from_file_location(
    "cry_detector_engine", engine / "__init__.py", submodule_search_locations=[str(engine)]
)
package = importlib.util.module_from_spec(spec)
sys.modules["cry_detector_engine"] = package
spec.loader.exec_module(package)
names = []
for path in sorted(engine.rglob("*.py")):
    if "__pycache__" in path.parts or path.name == "__main__.py":
        continue
    parts = path.relative_to(engine).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts:
        name = ".".join(("cry_detector_engine", *parts))
        importlib.import_module(name)
        names.append(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("homeassistant", "custom_components")
                and sys.modules[m] is not None)
print(json.dumps({"imported": names, "leaked": leaked}))
"""


def imported_roots(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_engine_has_the_core_modules() -> None:
    """The walk below really sees the engine (guards against a wrong path)."""
    names = {p.name for p in ENGINE_FILES}
    assert {"__init__.py", "errors.py", "features.py", "card.py", "tracker.py"} <= names


@pytest.mark.parametrize(
    "path", ENGINE_FILES, ids=[str(p.relative_to(ENGINE)) for p in ENGINE_FILES]
)
def test_no_homeassistant_or_absolute_package_import(path: Path) -> None:
    """No engine file imports homeassistant or itself absolutely (only relative imports)."""
    offending = [
        f"{path.name}:{line} imports {root}"
        for line, root in imported_roots(path)
        if root in FORBIDDEN_ROOTS
    ]
    assert offending == []


def test_engine_imports_by_path_without_homeassistant(tmp_path: Path) -> None:
    """Loaded as top-level `cry_detector_engine` with homeassistant blocked, every module imports."""
    result = subprocess.run(
        [sys.executable, "-c", LOAD_BY_PATH, str(ENGINE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["leaked"] == []
    for module in ("errors", "features", "card", "tracker"):
        assert f"cry_detector_engine.{module}" in report["imported"]
