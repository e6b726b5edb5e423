#!/usr/bin/env bash
# Install the system packages the test-suite needs (Debian), when missing.
# Run as root (CI is); otherwise prints what is missing and carries on: the
# tests that need a missing component skip locally and fail under CI=true.
#
#   redis-server   the Redis store tests (tests/_redis.py)
#   node, npm      the real OpenID Connect provider (tests/idp, tests/_idp.py);
#                  its packages are installed by the test fixture (npm ci)
#   chromium,      the dashboard's browser tests (tests/test_web_browser.py), driven
#   chromium-driver  by the playwright package (the dev extra) with Debian's chromium
set -euo pipefail

# oidc-provider 9 (tests/idp) needs Node.js 20.18 or later
NODE_MIN_MAJOR=20
NODE_MIN_MINOR=18
# what to install when Debian's Node.js is older than that (Debian 12 has 18)
NODE_FALLBACK_MAJOR=22

is_root() { [ "$(id -u)" -eq 0 ]; }

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ! command -v node >/dev/null 2>&1; then
    need+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
    need+=(npm)
fi
[ -x /usr/bin/chromium ] || need+=(chromium chromium-driver)

if [ ${#need[@]} -gt 0 ]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "missing system packages (install them to run every test): ${need[*]}" >&2
    fi
fi

node_recent_enough() {
    node -e "
        const [major, minor] = process.versions.node.split('.').map(Number);
        process.exit(major > $NODE_MIN_MAJOR
            || (major === $NODE_MIN_MAJOR && minor >= $NODE_MIN_MINOR) ? 0 : 1);
    "
}

if command -v node >/dev/null 2>&1 && ! node_recent_enough; then
    # Debian has no newer Node.js; the npm registry's node-linux-<arch> package
    # carries the official binary, and a global install under /usr/local links it as
    # /usr/local/bin/node, ahead of /usr/bin/node on PATH.
    case "$(uname -m)" in
        x86_64) arch=x64 ;;
        aarch64 | arm64) arch=arm64 ;;
        *) arch="" ;;
    esac
    if is_root && [ -n "$arch" ] && command -v npm >/dev/null 2>&1; then
        echo "Node.js $(node --version) is older than $NODE_MIN_MAJOR.$NODE_MIN_MINOR;" \
            "installing Node.js $NODE_FALLBACK_MAJOR from the npm registry (node-linux-$arch)"
        if npm install --global --prefix /usr/local --no-audit --no-fund --loglevel=error \
            "node-linux-$arch@$NODE_FALLBACK_MAJOR" >/dev/null; then
            hash -r
            echo "node is now $(command -v node): $(node --version)"
        else
            # not fatal here: the real-IdP tests say what is missing
            echo "installing Node.js $NODE_FALLBACK_MAJOR failed" >&2
        fi
    else
        echo "Node.js $(node --version) is older than $NODE_MIN_MAJOR.$NODE_MIN_MINOR:" \
            "the real-IdP tests need a newer one" >&2
    fi
fi
