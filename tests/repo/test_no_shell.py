"""Every subprocess is started from an argument list, never through a shell (checked on the AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
# Code that ships or that people run: the integration, scripts, benchmarks, the training package.
CHECKED = [
    REPO / "custom_components",
    REPO / "scripts",
    REPO / "benchmarks",
    REPO / "training" / "cry_training",
]
SHELL_FUNCTIONS = {
    "system",  # os.system
    "popen",  # os.popen
    "create_subprocess_shell",  # asyncio
    "subprocess_shell",  # loop.subprocess_shell
    "getoutput",  # subprocess.getoutput / getstatusoutput run a shell
    "getstatusoutput",
}
STARTERS = {
    "run",
    "Popen",
    "call",
    "check_call",
    "check_output",
    "create_subprocess_exec",
    "subprocess_exec",
}


def python_files() -> list[Path]:
    """The Python files under the checked folders."""
    return sorted(
        path
        for folder in CHECKED
        if folder.is_dir()
        for path in folder.rglob("*.py")
        if "__pycache__" not in path.parts
    )


def _name(node: ast.expr) -> str | None:
    """The called name: `f` for f(...) and x.f(...)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_text(node: ast.expr) -> bool:
    """Whether an expression is a string built in place (a command line, not a list)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.BinOp) and (_is_text(node.left) or _is_text(node.right))


def _starts_process(call: ast.Call, aliases: set[str], imported: set[str]) -> bool:
    """Whether a call is subprocess.run/Popen/... or an *_exec (whose first argument is the program)."""
    func = call.func
    if isinstance(func, ast.Attribute):
        if func.attr in ("create_subprocess_exec", "subprocess_exec"):
            return True
        return (
            func.attr in STARTERS
            and isinstance(func.value, ast.Name)
            and func.value.id in aliases
        )
    return isinstance(func, ast.Name) and func.id in imported


def shell_uses(source: str, filename: str = "<test>") -> list[str]:
    """Describe every way the code could start a process through a shell."""
    tree = ast.parse(source, filename)
    aliases, imported = {"subprocess"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {
                a.asname or a.name for a in node.names if a.name == "subprocess"
            }
        if isinstance(node, ast.ImportFrom) and node.module == "subprocess":
            imported |= {a.asname or a.name for a in node.names if a.name in STARTERS}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess"):
            problems += [
                f"line {node.lineno}: imports {node.module}.{alias.name}"
                for alias in node.names
                if alias.name in SHELL_FUNCTIONS
            ]
        if not isinstance(node, ast.Call):
            continue
        called = _name(node.func)
        if called in SHELL_FUNCTIONS:
            problems.append(f"line {node.lineno}: calls {called}()")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                problems.append(
                    f"line {node.lineno}: shell={ast.unparse(keyword.value)}"
                )
        if (
            _starts_process(node, aliases, imported)
            and len(node.args) == 1
            and _is_text(node.args[0])
        ):
            problems.append(f"line {node.lineno}: {called}() given a command string")
    return problems


def test_the_checked_folders_hold_code() -> None:
    """The scan covers the integration (and is not silently scanning nothing)."""
    files = {path.relative_to(REPO).as_posix() for path in python_files()}
    assert "custom_components/cry_detector/engine/sources/ffmpeg.py" in files
    assert len(files) > 20


@pytest.mark.parametrize(
    "path", python_files(), ids=lambda path: path.relative_to(REPO).as_posix()
)
def test_no_shell(path: Path) -> None:
    assert shell_uses(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    ("code", "found"),
    [
        ("import os\nos.system('ffmpeg -i ' + url)", "calls system()"),
        ("import os\nos.popen('ls')", "calls popen()"),
        ("from os import system", "imports os.system"),
        ("import subprocess\nsubprocess.run(cmd, shell=True)", "shell=True"),
        ("import subprocess\nsubprocess.Popen(cmd, shell=flag)", "shell=flag"),
        ("import subprocess\nsubprocess.run(f'ffmpeg -i {url}')", "command string"),
        ("import subprocess\nsubprocess.check_output('ls ' + d)", "command string"),
        (
            "import asyncio\nasyncio.create_subprocess_shell(c)",
            "create_subprocess_shell",
        ),
        ("loop.subprocess_shell(factory, 'ls')", "subprocess_shell"),
        ("import subprocess\nsubprocess.getoutput('ls')", "getoutput"),
        ("asyncio.create_subprocess_exec('ffmpeg -i x')", "command string"),
        ("from subprocess import run as r\nr('ls -l')", "command string"),
        ("import subprocess as sp\nsp.call('ls -l')", "command string"),
    ],
)
def test_the_checker_finds_shell_use(code: str, found: str) -> None:
    problems = shell_uses(code)
    assert len(problems) == 1 and found in problems[0]


@pytest.mark.parametrize(
    "code",
    [
        "import subprocess\nsubprocess.run(['ffmpeg', '-i', url], check=True)",
        "import subprocess\nsubprocess.run(command, shell=False)",
        "asyncio.create_subprocess_exec('ffmpeg', '-i', url)",
        "asyncio.create_subprocess_exec(*command, stdout=PIPE)",
        "api.call('DELETE', f'/api/flow/{flow_id}')",  # not a process
        "pipeline.run()",
    ],
)
def test_argument_lists_pass(code: str) -> None:
    assert shell_uses(code) == []
