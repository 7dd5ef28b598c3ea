"""Entry point of ``python -m tokens.sts`` (see :mod:`tokens.sts._cli`)."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
