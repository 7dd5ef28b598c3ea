"""WSGI entry point (gunicorn kplc_sts.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kplc_sts.settings.local")

application = get_wsgi_application()
