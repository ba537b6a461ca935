"""`make lint`'s layering check: import-linter's contracts (pyproject.toml) over the installed layout.

The top-level folders install as subpackages of `kumo` (`controller/` is `kumo.controller`, see
`[tool.setuptools] package-dir`), but import-linter finds a package's modules by walking the
folder its root package lives in, where the editable install's mapping does not exist. So this
copies the source into the layout a wheel would have, in a temporary directory, and runs
`lint-imports` there with that copy first on the import path. The mapping is read from
the pyproject.toml files, the one place it is declared; copying a hundred small files takes milliseconds.

    python -m kumo.testbed.importlint        # exit status of lint-imports
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Top-level packages that are not installed but are checked too (run from the project root).
UNINSTALLED = ("bench",)
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "controlplane", "*.egg-info")


def installed_layout(target: Path) -> None:
    """Copy every package of pyproject's package-dir mapping to where the wheel puts it."""
    mapping: dict[str, Path] = {}
    for project in (ROOT, ROOT / "testbed"):  # kumo, and the test bed's own distribution
        setuptools = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"]
        mapping.update({package: project / folder for package, folder in setuptools["package-dir"].items()})
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        destination = target.joinpath(*package.split("."))
        shutil.copytree(folder, destination, ignore=SKIP, dirs_exist_ok=True)
    for package in UNINSTALLED:
        shutil.copytree(ROOT / package, target / package, ignore=SKIP)


def main() -> int:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="kumo-importlint-") as scratch:
        installed_layout(Path(scratch))
        env = {**os.environ, "PYTHONPATH": scratch}
        config = str(ROOT / "pyproject.toml")
        return subprocess.call([str(lint_imports), "--config", config, "--no-cache"], cwd=scratch, env=env)


if __name__ == "__main__":
    sys.exit(main())
