"""The system binaries the deploy tests call: kubectl (kustomize), promtool and prometheus.

A missing binary fails the test that needs it, with the way to install it: these checks are the
point of tests/deploy, so skipping them would let CI pass without having checked anything.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINTS = {
    "kubectl": "install kubectl (1.27+ bundles kustomize v5): https://kubernetes.io/docs/tasks/tools/",
    "promtool": "run `make system-tools` (.ci/install-system-tools.sh installs Debian's prometheus)",
    "prometheus": "run `make system-tools` (.ci/install-system-tools.sh installs Debian's prometheus)",
}


def require(binary: str) -> str:
    """The path of ``binary``; fails the calling test with an install hint when it is not on PATH."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"`{binary}` is not on PATH; {INSTALL_HINTS.get(binary, 'install it')}", pytrace=False)
    return path


def run(binary: str, *args: str | Path, timeout_s: float = 60) -> str:
    """Runs ``binary args...`` from the repository root; fails with its output unless it exits 0.

    Returns:
        Its standard output.
    """
    command = [require(binary), *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        pytest.fail(
            f"`{binary} {' '.join(command[1:])}` exited {result.returncode}:\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
    return result.stdout
