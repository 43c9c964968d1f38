"""``python -m client``: the ``denoise`` command."""

import sys

from client.cli import main

sys.exit(main())
