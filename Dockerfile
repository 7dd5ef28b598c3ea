FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Build-time placeholders only: collectstatic touches no key, and the real secrets come from the
# environment at run time (production settings refuse to start without them).
RUN DJANGO_SETTINGS_MODULE=kplc_sts.settings.production DJANGO_SECRET_KEY=collectstatic-only \
    STS_KEK=0000000000000000000000000000000000000000000000000000000000000000 \
    python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 app && chown -R app /app/var
USER app

EXPOSE 8000
CMD ["gunicorn", "kplc_sts.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--access-logfile", "-"]
