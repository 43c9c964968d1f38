"""Build-time check of a worker image: every model in the registry is installed and readable.

    python /opt/denoise/check_models.py

The worker images run it as their runtime user, so a model that did not make it into the
package (pyproject.toml's package-data globs decide which files ship) or that this user cannot
read fails the build instead of the first job. Exits non-zero with the reason.
"""

from __future__ import annotations

import sys

from workers.models.registry import load_registry


def main() -> int:
    entries = load_registry()
    if not entries:
        print("the model registry names no model", file=sys.stderr)
        return 1
    for entry in entries.values():
        files = [path for path in entry.path.rglob("*") if path.is_file()]
        if not files:
            print(f"model {entry.name}: nothing installed at {entry.path}", file=sys.stderr)
            return 1
        for path in files:
            with path.open("rb") as handle:  # raises PermissionError for an unreadable file
                handle.read(1)
        print(f"model {entry.name}: {len(files)} files at {entry.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
