#!/bin/sh
# Debian's chromium and chromedriver, for the console's browser tests (tests/console).
# Nothing to do when both are there; otherwise apt installs them (as root, or through sudo).
set -e
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing chromium and chromium-driver for the console tests" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
