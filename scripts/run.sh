#!/usr/bin/env bash
# Start the demo back office: migrate, seed, then the local Africa's Talking gateway, the
# background jobs (a Celery worker + beat when CELERY_BROKER_URL is set, an in-process ticker
# otherwise) and the web server. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
PORT=${PORT:-8000}
GATEWAY_PORT=${GATEWAY_PORT:-8025}
mkdir -p var

if [ -f .env ]; then
  set -a; . ./.env; set +a
fi
export AT_API_URL=${AT_API_URL:-http://127.0.0.1:$GATEWAY_PORT}
export SMS_BACKEND=${SMS_BACKEND:-sms.backends.africastalking.AfricasTalkingBackend}
export SMS_DELIVERY_REPORT_SECRET=${SMS_DELIVERY_REPORT_SECRET:-demo-dlr-secret}
# Demo values (production refuses them): the USSD callback's secret path and the /metrics token.
export USSD_CALLBACK_SECRET=${USSD_CALLBACK_SECRET:-demo-ussd-secret}
export METRICS_TOKEN=${METRICS_TOKEN:-demo-metrics-token}

"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput >/dev/null
"$PY" manage.py seed_demo

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

"$PY" manage.py fake_africastalking --port "$GATEWAY_PORT" \
  --callback "http://127.0.0.1:$PORT/sms/delivery-reports/$SMS_DELIVERY_REPORT_SECRET/" \
  >var/fake-africastalking.log 2>&1 &
pids+=($!)

if [ -n "${CELERY_BROKER_URL:-}" ]; then
  "$VENV/bin/celery" -A kplc_sts worker -Q sms_codes,sms_notices,celery -c 2 --loglevel INFO >var/celery-worker.log 2>&1 &
  pids+=($!)
  "$VENV/bin/celery" -A kplc_sts beat --loglevel INFO --schedule var/celerybeat-schedule >var/celery-beat.log 2>&1 &
  pids+=($!)
else
  "$PY" manage.py campaign_tick --loop 15 >var/campaign-tick.log 2>&1 &
  pids+=($!)
fi

echo "Back office: http://127.0.0.1:$PORT/dashboard/  admin: http://127.0.0.1:$PORT/admin/  health: http://127.0.0.1:$PORT/healthz"
echo "USSD callback (Africa's Talking posts here): http://127.0.0.1:$PORT/ussd/$USSD_CALLBACK_SECRET/"
echo "  try it: $PY manage.py ussd_simulate --phone +254700000001"
echo "Metrics: curl -H 'Authorization: Bearer $METRICS_TOKEN' http://127.0.0.1:$PORT/metrics"
"$PY" manage.py runserver "127.0.0.1:$PORT"
