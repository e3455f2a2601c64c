"""The code keeps to the project's style rules (pyproject.toml ``[tool.ruff]``): lines of at most 120 characters
and no pyflakes finding (unused imports, undefined names)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing() -> None:
    try:
        import ruff  # noqa: F401
    except ImportError:
        if shutil.which("ruff") is None:
            pytest.skip("ruff is not installed (requirements.txt pins it)")
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "lowrank", "study",
                          "theory", "tenbcd", "bench", "tests", "scripts", "examples"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
