"""The package's shape: layers that import one way and no import cycles,
as the import-linter contracts in pyproject.toml declare them."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("needs the source tree (pyproject.toml)")
    lint = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent))
    assert lint, "import-linter is part of the test extra: pip install '.[test]'"
    out = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout
