#!/usr/bin/env bash
# Install Debian's headless Chromium and its WebDriver (chromium, chromium-driver) for the page test
# (tests/browser.py). Called by `make test` / `make test-fast`, not by `make train`: only the tests need a browser.
# Idempotent: when both commands are on PATH it returns at once. Where it cannot install (not root, no apt-get) it
# says so in one line and exits 0, so the browser test skips instead of the whole run failing.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi

if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
  echo "setup_browser: chromium/chromedriver missing and not installable here (needs apt-get as root);" \
    "the browser test will skip (install: sudo apt-get install chromium chromium-driver)." >&2
  exit 0
fi

echo "setup_browser: installing chromium and chromium-driver (apt) ..."
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
}
# The package lists may be stale (a security update replaced the version they name): refresh them only then, as
# `apt-get update` alone costs tens of seconds.
if ! apt_install && ! { apt-get update -qq && apt_install; }; then
  echo "setup_browser: apt-get could not install chromium chromium-driver (see above); the browser test will skip." >&2
  exit 0
fi
echo "setup_browser: done ($(chromium --version 2>/dev/null || echo chromium ?), $(chromedriver --version | cut -d' ' -f1-2))"
