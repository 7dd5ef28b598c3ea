"""The embedded demo: SQLite, in-process tasks and a generated key-encryption key by default.

Setting DATABASE_URL / CELERY_BROKER_URL switches to PostgreSQL and real Celery workers.
"""

from __future__ import annotations

import os
import secrets

from .base import *  # noqa: F403
from .base import STS_KEK, VAR_DIR, env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)

if not STS_KEK:
    # The demo generates its own KEK once and keeps it beside the SQLite file, so that keys
    # loaded in one run still decrypt in the next. Production refuses to start without one.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _kek_file = VAR_DIR / "demo-kek.hex"
    if not _kek_file.exists():
        _kek_file.write_text(secrets.token_hex(32))
        os.chmod(_kek_file, 0o600)
    STS_KEK = _kek_file.read_text().strip()
