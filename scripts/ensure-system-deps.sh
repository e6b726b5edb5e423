#!/usr/bin/env bash
# Install the system packages the test-suite needs (Debian), when missing.
# Run as root (CI is); otherwise prints what is missing and carries on: the
# tests that need a missing component skip locally and fail under CI=true.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
    echo "missing system packages (install them to run every test): ${need[*]}" >&2
fi
