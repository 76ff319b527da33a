"""The import layers of ``distill`` (pyproject.toml, ``[tool.importlinter]``): ``lint-imports``
keeps every contract on the real tree, and breaks, naming the contract, on a copy of the
package given a deliberate back-edge."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is not installed (the dev extra has it)")

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package and pyproject.toml in ``cwd`` (which it puts first on the
    path, so a copy there is the one it reads), without a cache."""
    script = Path(sys.executable).parent / "lint-imports"
    command = [str(script)] if script.exists() else [shutil.which("lint-imports") or "lint-imports"]
    env = {**os.environ, "PYTHONPATH": str(cwd), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([*command, "--no-cache", "--no-logo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "distill", tmp_path / "distill",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_its_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module,back_edge,contract", [
    ("kinematics/__init__.py", "import distill.training", "Layers"),
    ("kinematics/back_edge.py", "from distill.ops import info_nce", "Layers"),
    ("data/back_edge.py", "from distill import world", "Layers"),
    ("metrics.py", "from distill.data import formats", "read no data"),
    ("world/back_edge.py", "from distill.world import __main__", "command-line modules"),
    ("constants.py", "import numpy", "leaf"),
])
def test_a_back_edge_breaks_its_contract(tmp_path, module, back_edge, contract):
    tree = copy_of_the_package(tmp_path)
    path = tree / "distill" / module
    text = path.read_text() if path.exists() else '"""A deliberate back-edge."""\n'
    path.write_text(text + f"\n{back_edge}  # deliberate back-edge\n")
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert len(broken) == 1 and contract in broken[0], result.stdout
    assert "1 broken" in result.stdout


def test_the_flag_parser_imports_no_implementation():
    """`python -m distill.train --help` and a bad flag answer without torch, DALI or distill._C."""
    code = ("import sys, distill.training.args as a; a.build_parser().parse_args(['--model', "
            "'baseline']); print([m for m in ('torch', 'nvidia.dali', 'distill._C', 'numpy') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
