#!/usr/bin/env bash
# The README's curl examples as a runnable script.
#
#   EXEIO_API_KEY=... [EXEIO_URL=http://127.0.0.1:8080] bash examples/curl-examples.sh
#
# It drives a running exeio through every endpoint with harmless local
# commands (sh, sleep, date), checks each HTTP status (curl -f), and removes
# every process and key it added, also when a step fails. It never calls
# /shutdown, /stop-all or /restart-all, so it leaves other processes alone.
# The key must be the admin key (adding, updating and keys need it).
set -euo pipefail

URL="${EXEIO_URL:-http://127.0.0.1:8080}"
KEY="${EXEIO_API_KEY:?set EXEIO_API_KEY to the key exeio printed (or stored in its api-key file)}"
PREFIX="curl-demo-$$"
ADDED=()
KEYS=()

# api METHOD PATH [JSON]: one authenticated request; fails on HTTP >= 400.
api() {
  local method=$1 path=$2
  shift 2
  if [ $# -gt 0 ]; then
    curl -fsS -X "$method" "$URL$path" \
      -H "exeio-api-key: $KEY" \
      -H "Content-Type: application/json" \
      -d "$1"
  else
    curl -fsS -X "$method" "$URL$path" -H "exeio-api-key: $KEY"
  fi
  echo
}

# add JSON: POST /add and remember the id for the clean-up.
add() {
  local id
  id=$(printf '%s' "$1" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p')
  ADDED+=("$id")
  api POST /add "$1"
}

cleanup() {
  local id name
  for id in "${ADDED[@]}"; do
    curl -sS -o /dev/null -X POST "$URL/remove/$id" -H "exeio-api-key: $KEY" || true
  done
  for name in "${KEYS[@]}"; do
    curl -sS -o /dev/null -X POST "$URL/keys/$name/revoke" -H "exeio-api-key: $KEY" || true
  done
  rm -f "${JAR:-}"
}
trap cleanup EXIT

# wait_for PATH TEXT: poll a GET endpoint until its body contains TEXT (10 s).
wait_for() {
  local path=$1 text=$2 i
  for i in $(seq 1 100); do
    if curl -fsS "$URL$path" -H "exeio-api-key: $KEY" | grep -q -- "$text"; then
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for '$text' in $path" >&2
  return 1
}

step() { printf '\n== %s\n' "$*"; }

# status CODE CURL-ARGS...: a request that must answer with exactly CODE.
status() {
  local want=$1 got
  shift
  got=$(curl -sS -o /dev/null -w '%{http_code}' "$@")
  echo "HTTP $got"
  if [ "$got" != "$want" ]; then
    echo "expected HTTP $want, got $got" >&2
    return 1
  fi
}

step "GET /info (no key needed)"
curl -fsS "$URL/info"
echo

step "GET /openapi.json (no key needed): the machine-readable contract"
DOC=$(curl -fsS "$URL/openapi.json")
printf '%s ...\n' "${DOC:0:160}"

step "POST /add: a long-running service with auto_restart"
add '{
  "id": "'"$PREFIX"'-web",
  "command": "sh",
  "args": ["-c", "echo serving; exec sleep 100000"],
  "auto_restart": true,
  "save_for_next_run": false
}'

step "GET /list (a bare JSON array)"
api GET /list

step "GET /status/{id}, with the Authorization: Bearer header"
curl -fsS "$URL/status/$PREFIX-web" -H "Authorization: Bearer $KEY"
echo

step "GET /logs/{id}?page=1&page_size=50 (newest first)"
wait_for "/logs/$PREFIX-web?page=1&page_size=50" "STDOUT: serving"
api GET "/logs/$PREFIX-web?page=1&page_size=50"

step "POST /restart/{id}, then POST /stop/{id} (no auto-restart after a manual stop)"
api POST "/restart/$PREFIX-web"
api POST "/stop/$PREFIX-web"
wait_for "/status/$PREFIX-web" '"status":"manually_stopped"'

step "POST /start/{id}"
api POST "/start/$PREFIX-web"
wait_for "/status/$PREFIX-web" '"status":"running"'

step "POST /input/{id}: a child that reads its stdin"
add '{
  "id": "'"$PREFIX"'-echo",
  "command": "sh",
  "args": ["-c", "while read -r line; do echo \"got: $line\"; done"]
}'
api POST "/input/$PREFIX-echo" '{"input": "hello from curl"}'
wait_for "/logs/$PREFIX-echo?page=1&page_size=10" "got: hello from curl"
api GET "/logs/$PREFIX-echo?page=1&page_size=10"

step "POST /clear-log/{id}"
api POST "/clear-log/$PREFIX-echo"

step "POST /signal/{id}: a signal to the process group, no restart (a reload)"
add '{
  "id": "'"$PREFIX"'-reload",
  "command": "sh",
  "args": ["-c", "trap \"echo reloaded\" HUP; echo ready; while :; do sleep 1; done"]
}'
wait_for "/logs/$PREFIX-reload?page=1&page_size=5" "STDOUT: ready"
api POST "/signal/$PREFIX-reload" '{"signal": "HUP"}'
wait_for "/logs/$PREFIX-reload?page=1&page_size=5" "STDOUT: reloaded"

step "POST /add: a periodic job every second"
add '{
  "id": "'"$PREFIX"'-tick",
  "command": "date",
  "args": ["-u", "+tick at %H:%M:%S"],
  "periodic": true,
  "period_seconds": 1
}'
wait_for "/status/$PREFIX-tick" '"status":"waiting"'
api GET "/logs/$PREFIX-tick?page=1&page_size=5"

step "GET /logs/{id}?follow=true for 2 seconds (a chunked stream)"
curl -s -N --max-time 2 "$URL/logs/$PREFIX-tick?follow=true" \
  -H "exeio-api-key: $KEY" || true
echo

step "GET /logs/{id}?stream=system: only exeio's SYSTEM lines"
api GET "/logs/$PREFIX-tick?page=1&page_size=3&stream=system"

step "POST /run/{id}: run a job now; GET /runs/{id}: its run history"
api POST "/run/$PREFIX-tick"
wait_for "/runs/$PREFIX-tick?limit=5" '"trigger":"manual"'
api GET "/runs/$PREFIX-tick?limit=3"

step "POST /add: a calendar job (cron) in a time zone, with a timeout"
add '{
  "id": "'"$PREFIX"'-cron",
  "command": "sh",
  "args": ["-c", "echo nightly"],
  "schedule": "30 2 * * *",
  "timezone": "UTC",
  "timeout_seconds": 600,
  "overlap": "skip"
}'

step "POST /update/{id}: change a setting (no restart needed)"
api POST "/update/$PREFIX-web" '{
  "command": "sh",
  "args": ["-c", "echo serving; exec sleep 100000"],
  "auto_restart": true,
  "stop_timeout_seconds": 5
}'

step "POST /apply with dry_run: what would change"
api POST /apply '{
  "processes": [
    {"id": "'"$PREFIX"'-web", "command": "sh", "args": ["-c", "echo serving; exec sleep 100000"],
     "auto_restart": true, "stop_timeout_seconds": 5},
    {"id": "'"$PREFIX"'-new", "command": "sleep", "args": ["100000"]}
  ],
  "dry_run": true
}'

step "POST /keys: a named key with the read role; it may read but not stop"
READ_KEY=$(api POST /keys '{"name": "'"$PREFIX"'-ro", "role": "read"}' |
  sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
KEYS+=("$PREFIX-ro")
api GET /keys
curl -fsS "$URL/status/$PREFIX-web" -H "exeio-api-key: $READ_KEY" >/dev/null && echo "read: ok"
status 403 -X POST "$URL/stop/$PREFIX-web" -H "exeio-api-key: $READ_KEY"
api POST "/keys/$PREFIX-ro/revoke"
KEYS=()
status 401 "$URL/list" -H "exeio-api-key: $READ_KEY"

step "POST /session: a browser session (cookie); changes need X-Exeio-CSRF: 1"
JAR=$(mktemp)
curl -fsS -c "$JAR" -X POST "$URL/session" -H 'Content-Type: application/json' -d '{"key": "'"$KEY"'"}'
echo
status 403 -b "$JAR" -X POST "$URL/restart/$PREFIX-web"
status 200 -b "$JAR" -X POST "$URL/restart/$PREFIX-web" -H 'X-Exeio-CSRF: 1'
curl -fsS -b "$JAR" -X POST "$URL/session/logout"
echo

step "GET /events for 1 second (server-sent events; replay with ?since=0)"
EVENTS=$(curl -s -N --max-time 1 "$URL/events?since=0" -H "exeio-api-key: $KEY" || true)
printf '%s\n' "$EVENTS" | sed -n '1,8p'

step "GET /audit: the audit log, newest first"
api GET "/audit?page=1&page_size=3"

step "GET /notify: the alert targets (secrets never shown); a bad list changes nothing"
api GET /notify
status 400 -X PUT "$URL/notify" -H "exeio-api-key: $KEY" -d '[{"name": "x", "webhook": "ftp://nope"}]'

step "GET /metrics (Prometheus text)"
api GET /metrics | grep "$PREFIX" || true

step "POST /add with a health probe: healthy once a line matches (README: Health probes)"
add '{
  "id": "'"$PREFIX"'-db",
  "command": "sh",
  "args": ["-c", "echo starting; sleep 0.3; echo database system is ready; exec sleep 600"],
  "health": {"log": "ready"}
}'
wait_for "/status/$PREFIX-db" '"health":"healthy"'

step "an exec probe that fails: the message says why"
add '{
  "id": "'"$PREFIX"'-api",
  "command": "sleep",
  "args": ["600"],
  "health": {"exec": ["sh", "-c", "echo no answer on 8000 >&2; exit 1"], "period_seconds": 1}
}'
wait_for "/status/$PREFIX-api" '"health_message":"exit 1: no answer on 8000"'

step "GET /health/{id}: the health and the last checks, newest first"
api GET "/health/$PREFIX-api"

step "POST /remove/{id} for everything this script added"
for id in "${ADDED[@]}"; do
  api POST "/remove/$id"
done
ADDED=()

step "done"
