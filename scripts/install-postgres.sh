#!/usr/bin/env bash
# Installs what the PostgreSQL connector needs, once: Debian's PostgreSQL server and client
# (the tests start their own server on 127.0.0.1 in a temporary folder, as an unprivileged
# user, since PostgreSQL refuses to run as root) and OpenSSL's headers for the build
# (tokio-postgres' TLS). Needs root or sudo only when something is missing.
set -euo pipefail
need=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  need+=(postgresql postgresql-client)
fi
if ! command -v psql >/dev/null; then need+=(postgresql-client); fi
if ! pkg-config --exists openssl 2>/dev/null; then need+=(libssl-dev pkg-config); fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "Installing ${need[*]} (Debian packages) for the PostgreSQL connector and its test…" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
