"""What a non-editable install ships: every data file in the package, and no path outside it.

``pip install eqv2`` users have no repository around the package, so the code may only read
files inside ``eqv2/`` (through ``importlib.resources`` or ``__file__``'s own directory), and
the wheel must carry each such file (setuptools package-data in pyproject.toml).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "eqv2"


def _package_data_files() -> list[str]:
    """Every non-Python file under src/eqv2 (what the code may load at run time)."""
    return sorted(
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )


def test_package_holds_the_data_the_code_loads():
    files = _package_data_files()
    assert "eqv2/adsorption/resources/oc20_adsorbates.extxyz" in files
    assert "eqv2/cli/resources/quickstart.yaml" in files


@pytest.mark.slow
def test_wheel_carries_every_package_data_file(tmp_path):
    """Build the wheel from a copy of the sources (~5 s) and compare its file list."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, tmp_path / name)
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(out), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0 and "No module named pip" in result.stderr:
        pytest.skip("pip is not installed in this environment")
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("eqv2-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in _package_data_files() if f not in names]
    assert not missing, f"declare these in [tool.setuptools.package-data]: {missing}"
    py = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")}
    assert py <= names, sorted(py - names)


def test_packaged_quickstart_is_the_repository_preset():
    packaged = PACKAGE / "cli" / "resources" / "quickstart.yaml"
    assert packaged.read_bytes() == (REPO / "configs" / "quickstart.yaml").read_bytes(), (
        "configs/quickstart.yaml and its packaged copy differ: copy the preset to "
        "src/eqv2/cli/resources/quickstart.yaml"
    )


# Ways source code reaches outside its installed package: the repository's parents, the
# shared fixtures, or the working directory.
_OUTSIDE = [
    (re.compile(r"__file__\)?\S*\.parents\["), "a parent directory of __file__"),
    (re.compile(r"__file__\)?\S*\.parent\.parent"), "a parent directory of __file__"),
    (re.compile(r"[\"']\.\./shared|[\"']shared/"), "the repository's shared/ directory"),
    (re.compile(r"[\"']configs/[\w.]+\.yaml[\"']"), "the repository's configs/ directory"),
]


def test_no_source_reads_a_path_outside_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, what in _OUTSIDE:
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)
