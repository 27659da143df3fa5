import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


@pytest.mark.slow
def test_wheel_ships_configs_spaces_and_architectures(tmp_path):
    """A non-editable install must find conf/, search_spaces/ and the built-in architectures."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("mbnas-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mbnas/conf/cost.yaml" in names
    assert "mbnas/architectures/efficientnet_b0.yaml" in names
    assert "mbnas/search_spaces/__init__.py" in names
    assert "mbnas/__main__.py" in names
    # Every subpackage of the source tree ships (setuptools lists them by hand in pyproject).
    root = Path(__file__).resolve().parents[1]
    for init in (root / "mbnas").glob("*/__init__.py"):
        assert f"mbnas/{init.parent.name}/__init__.py" in names, init.parent.name
