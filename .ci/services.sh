#!/usr/bin/env bash
# Optional system services for the test suite, run as root by .ci/run before `make test` on a fresh
# Debian machine. Installs Debian's chromium (browser tests, driven by Playwright with
# executable_path; no browser download) and PostgreSQL (store tests), starts PostgreSQL and creates
# the test role/database the tests look for by default:
#     postgresql://glm:glm@127.0.0.1:5432/glm_align_test   (override with GLM_ALIGN_TEST_PG_URL)
# Exports nothing. Safe to run twice. Tests that need a missing service skip with a reason.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-noto-cjk >/dev/null \
    || apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Start the first (normally the only) cluster Debian created; create one if there is none.
if ! command -v pg_lsclusters >/dev/null 2>&1; then
  echo "services.sh: PostgreSQL tools missing; postgres tests will skip" >&2
  exit 0
fi
if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  ver="$(ls /usr/lib/postgresql | sort -V | tail -1)"
  pg_createcluster "$ver" main >/dev/null
fi
read -r ver cluster _ < <(pg_lsclusters -h | head -1)
pg_ctlcluster "$ver" "$cluster" start 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1 -p 5432" && break
  sleep 1
done

psql_su() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAX -c \"$1\""; }
if [ "$(psql_su "SELECT 1 FROM pg_roles WHERE rolname='glm'")" != "1" ]; then
  psql_su "CREATE ROLE glm LOGIN PASSWORD 'glm'"
fi
if [ "$(psql_su "SELECT 1 FROM pg_database WHERE datname='glm_align_test'")" != "1" ]; then
  psql_su "CREATE DATABASE glm_align_test OWNER glm"
fi
echo "services.sh: chromium at $(command -v chromium || echo none); PostgreSQL $ver/$cluster up at 127.0.0.1:5432, db glm_align_test"
