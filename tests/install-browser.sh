#!/bin/sh
# Installs Debian's headless-capable Chromium and its WebDriver for the browser tests (the page
# tests of `img2img serve`, the run report and the documentation site). Nothing downloads a browser at run time: this
# uses the system package manager only. Where it cannot install (no apt-get, no root and no
# sudo), it says so and exits 0; the browser tests then skip with that reason.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser: no apt-get here; the browser tests will skip" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "install-browser: not root and no sudo; the browser tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } \
    || echo "install-browser: apt-get could not install chromium; the browser tests will skip" >&2
exit 0
