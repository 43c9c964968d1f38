"""The API never imports torch or diffusers (its image does not even install them)."""

from __future__ import annotations

import subprocess
import sys


def test_api_app_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from app.main import create_app\n"
        "from app.settings import ApiSettings\n"
        "import app.__main__, app.contract, app.resolution\n"
        "create_app(ApiSettings())\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the API imported: {out.stdout.strip()}"
