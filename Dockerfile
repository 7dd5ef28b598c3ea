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
RUN DJANGO_SETTINGS_MODULE=kplc_sts.settings.production \
    DJANGO_SECRET_KEY=build-placeholder-not-a-secret-build-placeholder-not-a-secret \
    STS_KEK=0000000000000000000000000000000000000000000000000000000000000000 \
    DJANGO_ALLOWED_HOSTS=build AT_API_URL=https://build.invalid AT_API_KEY=build-placeholder-key \
    SMS_DELIVERY_REPORT_SECRET=build-placeholder-dlr USSD_CALLBACK_SECRET=build-placeholder-ussd \
    python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 app && chown -R app /app/var
USER app

EXPOSE 8000
# gunicorn's own access log stays off: the application logs one redacted JSON line per request.
# Each start gets an empty metrics directory shared by its gunicorn workers (prometheus multiprocess mode).
CMD ["sh", "-c", "export PROMETHEUS_MULTIPROC_DIR=/tmp/kplc-metrics && rm -rf $PROMETHEUS_MULTIPROC_DIR && mkdir -p $PROMETHEUS_MULTIPROC_DIR && exec gunicorn kplc_sts.wsgi -c kplc_sts/gunicorn_conf.py --bind 0.0.0.0:8000"]
