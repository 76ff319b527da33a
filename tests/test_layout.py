"""Size limits of the code: no function over MAX_FUNCTION_LINES lines and no file over
MAX_FILE_LINES lines in the project's Python (distill/, scripts/, benchmarks/).

A function is every ``def`` and ``async def``: module functions, methods and nested functions,
each counted on its own (a nested function's lines count in its enclosing function too). Its
length runs from its ``def`` line to its last line (decorators excluded); a file's length is its
number of lines. The failure lists every offender, longest first."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("distill", "scripts", "benchmarks")
MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 400


def python_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def function_lengths(path: Path) -> list[tuple[int, str, int]]:
    """(line, name, length in lines) of every def / async def in the file, nested ones too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.lineno, node.name, node.end_lineno - node.lineno + 1)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def offenders() -> list[tuple[int, str]]:
    """(length, description) of every function and file over its limit."""
    found = []
    for path in python_files():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_FILE_LINES:
            found.append((lines, f"{rel}:1: file of {lines} lines (limit {MAX_FILE_LINES})"))
        for line, name, length in function_lengths(path):
            if length > MAX_FUNCTION_LINES:
                found.append((length, f"{rel}:{line}: function {name} of {length} lines "
                                      f"(limit {MAX_FUNCTION_LINES})"))
    return sorted(found, key=lambda item: (-item[0], item[1]))


def test_the_scan_sees_every_folder_and_measures_defs_as_documented(tmp_path):
    folders = {p.relative_to(ROOT).parts[0] for p in python_files()}
    assert folders == set(FOLDERS)
    source = tmp_path / "example.py"
    source.write_text("@decorator\n"          # 1 (not counted)
                      "def outer():\n"        # 2
                      "    async def inner():\n"  # 3
                      "        pass\n"        # 4
                      "    return inner\n"    # 5
                      "class A:\n"            # 6
                      "    def method(self):\n"  # 7
                      "        return 1\n")   # 8
    assert sorted(function_lengths(source)) == [(2, "outer", 4), (3, "inner", 2),
                                                (7, "method", 2)]


def test_no_function_over_80_lines_and_no_file_over_400_lines():
    found = offenders()
    if found:
        pytest.fail(f"{len(found)} over the size limits (split them up):\n  "
                    + "\n  ".join(text for _, text in found), pytrace=False)
