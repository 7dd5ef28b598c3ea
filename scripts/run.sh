#!/usr/bin/env bash
# Start the demo back office: migrate; start the local Africa's Talking gateway, the Celery worker
# (when CELERY_BROKER_URL is set) and the web server; then seed the demo data, so the first batch's
# notices are sent, delivered and reported back on the first try; then the periodic jobs (beat, or
# an in-process ticker). Every process logs to var/*.log; the console gets a few progress lines and,
# last, what a newcomer needs: the addresses, the logins, the partner API key. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
PORT=${PORT:-8000}
GATEWAY_PORT=${GATEWAY_PORT:-8025}
HOST=127.0.0.1
mkdir -p var

if [ -f .env ]; then
  set -a; . ./.env; set +a
fi
export PORT GATEWAY_PORT  # partners' curl hint and ussd_simulate's default URL use the port chosen
export AT_API_URL=${AT_API_URL:-http://$HOST:$GATEWAY_PORT}
export SMS_BACKEND=${SMS_BACKEND:-sms.backends.africastalking.AfricasTalkingBackend}
export SMS_DELIVERY_REPORT_SECRET=${SMS_DELIVERY_REPORT_SECRET:-demo-dlr-secret}
# Demo values (production refuses them): the USSD callback's secret path and the /metrics token.
export USSD_CALLBACK_SECRET=${USSD_CALLBACK_SECRET:-demo-ussd-secret}
export METRICS_TOKEN=${METRICS_TOKEN:-demo-metrics-token}

say() { printf '  %s\n' "$*"; }
fail() { printf '\nmake run: %s\n' "$*" >&2; exit 1; }

# A port is taken when something listens on it (SO_REUSEADDR: a closing socket does not count).
port_taken() {
  "$PY" - "$1" <<'PYTHON'
import socket, sys
probe = socket.socket()
probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    probe.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
PYTHON
}

# wait_http URL PID LOG WHAT: until URL answers (any HTTP status), or fail with the log's tail.
wait_http() {
  local url=$1 pid=$2 log=$3 what=$4
  for _ in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 15 "$log" >&2 || true
      fail "$what stopped at start (log: $log)"
    fi
    if "$PY" - "$url" <<'PYTHON'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass  # it answers: that is all we wait for
except OSError:
    sys.exit(1)
PYTHON
    then return 0; fi
    sleep 0.5
  done
  fail "$what did not answer at $url within a minute (log: $log)"
}

[ "$PORT" != "$GATEWAY_PORT" ] || fail "PORT and GATEWAY_PORT are both $PORT; give them different ports"
if port_taken "$PORT"; then
  fail "port $PORT is in use (another 'make run'?); set PORT=…, e.g. PORT=8010 GATEWAY_PORT=8035 make run"
fi
if port_taken "$GATEWAY_PORT"; then
  # Sending through another install's gateway would post our delivery reports to that install.
  fail "port $GATEWAY_PORT is in use (another install's SMS gateway?); set GATEWAY_PORT=…, e.g. GATEWAY_PORT=8035 make run"
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'printf "\nStopping…\n"; exit 130' INT TERM

echo "Starting the KPLC back office demo (logs in var/)"
"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py collectstatic --noinput -v 0
if [ -n "${DATABASE_URL:-}" ]; then
  name=${DATABASE_URL##*/}
  say "database ready (${DATABASE_URL%%:*}, ${name%%\?*})"  # never the URL itself: it may hold a password
else
  say "database ready (SQLite var/db.sqlite3)"
fi

"$PY" manage.py fake_africastalking --port "$GATEWAY_PORT" --refuse-demo-number \
  --callback "http://$HOST:$PORT/sms/delivery-reports/$SMS_DELIVERY_REPORT_SECRET/" \
  >var/fake-africastalking.log 2>&1 &
pids+=($!)
wait_http "http://$HOST:$GATEWAY_PORT/_fake/stats" "$!" var/fake-africastalking.log "the local SMS gateway"
say "local Africa's Talking gateway on port $GATEWAY_PORT"

if [ -n "${CELERY_BROKER_URL:-}" ]; then
  "$VENV/bin/celery" -A kplc_sts worker -Q sms_codes,sms_notices,celery -c 2 --loglevel INFO >var/celery-worker.log 2>&1 &
  worker=$!
  pids+=($worker)
  for _ in $(seq 1 120); do
    grep -q "ready\." var/celery-worker.log 2>/dev/null && break
    kill -0 "$worker" 2>/dev/null || { tail -n 15 var/celery-worker.log >&2; fail "the Celery worker stopped at start"; }
    sleep 0.5
  done
  say "Celery worker ready"
fi

"$PY" manage.py runserver --noreload "$HOST:$PORT" >var/web.log 2>&1 &
web=$!
pids+=($web)
wait_http "http://$HOST:$PORT/healthz" "$web" var/web.log "the web server"
say "web server on port $PORT"

# Its output holds the partner API key: kept for the summary below, never written to a log.
seed_output=$("$PY" manage.py seed_demo 2>var/seed.log) || { tail -n 20 var/seed.log >&2; fail "seeding the demo data failed (log: var/seed.log)"; }
say "demo data ready"

if [ -n "${CELERY_BROKER_URL:-}" ]; then
  "$VENV/bin/celery" -A kplc_sts beat --loglevel INFO --schedule var/celerybeat-schedule >var/celery-beat.log 2>&1 &
  pids+=($!)
else
  "$PY" manage.py campaign_tick --loop 15 >var/campaign-tick.log 2>&1 &
  pids+=($!)
fi

status=$("$PY" manage.py demo_status --wait 30 2>>var/seed.log || true)
base="http://$HOST:$PORT"
cat <<SUMMARY

================================================================================
KPLC back office is running. Ctrl-C stops everything.

  Campaign dashboard   $base/dashboard/
  Care desk (admin)    $base/admin/
  Partner API docs     $base/api/docs/
  Health               $base/healthz

$seed_output

$status

  USSD *977#:  callback $base/ussd/$USSD_CALLBACK_SECRET/ (what Africa's Talking posts to)
               try it: PORT=$PORT $PY manage.py ussd_simulate --phone +254700000001
  Metrics:     curl -H 'Authorization: Bearer $METRICS_TOKEN' $base/metrics
  Logs:        var/web.log, var/fake-africastalking.log, var/seed.log, $( [ -n "${CELERY_BROKER_URL:-}" ] && echo "var/celery-worker.log, var/celery-beat.log" || echo "var/campaign-tick.log" )
================================================================================
SUMMARY

wait "$web"
