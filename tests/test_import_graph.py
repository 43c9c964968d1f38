"""The import graph the architecture promises (docs/architecture.md):

- ``protocol`` (the shared contract) imports neither ``app`` nor ``workers``;
- ``app`` (the web front) and ``workers`` never import each other;
- serving code never imports offline code (``workers.training``, ``workers.evaluation``);
- the API process never loads torch, diffusers or numpy (its image does not install them);
- ``client`` (the Python client and the ``denoise`` command) imports only ``protocol`` of the
  project, and loads no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ("workers.training", "workers.evaluation")


def imports_of(package: str) -> dict[str, set[str]]:
    """Module name -> the absolute module names it imports (every import statement, anywhere)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[module] = names
    return graph


def offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in imports_of(package).items()
        for name in names
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


def test_protocol_imports_neither_side() -> None:
    assert offending("protocol", ("app", "workers", "torch", "diffusers", "numpy")) == []


def test_the_client_imports_only_the_contract() -> None:
    assert offending("client", ("app", "workers", "devstack", "bench", "torch", "diffusers", "numpy")) == []
    assert any(name.startswith("protocol") for names in imports_of("client").values() for name in names)


def test_app_and_workers_never_import_each_other() -> None:
    assert offending("app", ("workers",)) == []
    assert offending("workers", ("app",)) == []


def test_both_sides_use_the_shared_contract() -> None:
    for package in ("app", "workers"):
        assert any(name.startswith("protocol") for names in imports_of(package).values() for name in names), (
            package
        )


def test_serving_code_never_imports_offline_code() -> None:
    serving = {
        module: names for module, names in imports_of("workers").items() if not module.startswith(OFFLINE)
    }
    bad = sorted(
        f"{module} imports {name}"
        for module, names in serving.items()
        for name in names
        if name.startswith(OFFLINE)
    )
    assert bad == []


def test_api_process_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from app.main import create_app\n"
        "from app.settings import ApiSettings\n"
        "import app.__main__, protocol.schema, protocol.resolution, protocol.job_scripts\n"
        "create_app(ApiSettings())\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"the API imported: {out.stdout.strip()}"


def test_the_denoise_command_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import client, client.cli, client.compare\n"
        "client.cli.build_parser()\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'numpy', 'app', 'workers') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"the client imported: {out.stdout.strip()}"
