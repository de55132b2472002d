#!/usr/bin/env bash
# Creates/refreshes the virtualenv with everything pairsift needs, system packages included
# (chromium: the test that renders report.html as a reviewer sees it).
# Idempotent: re-running only installs what is missing.
set -euo pipefail
VENV="${1:-.venv}"
DEBS="tuxpaint-stamps-default apertium apertium-eng-spa dataset-fashion-mnist libcairo2 chromium"

missing=""
for pkg in $DEBS; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
  else
    echo "setup: apt-get not found; datasets/backends needing:$missing will report how to install them" >&2
  fi
fi

PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# torch first, pinned, so no other resolver step can pull a different build.
$PIP install -q "torch==2.14.1" "torchvision==0.29.1"
$PIP install -q -e ".[offline,dev,cloud,dataflow]"
# img2dataset (for the test that reads its real output) in a virtualenv of its own: it pulls
# pandas, opencv and wandb, which must not change the versions pairsift's venv resolved.
I2D_VENV="${VENV}-img2dataset"
if [ ! -x "$I2D_VENV/bin/img2dataset" ]; then
  "$PYTHON" -m venv "$I2D_VENV"
  "$I2D_VENV/bin/python" -m pip install -q "img2dataset==1.47.0"
fi
echo "setup: done ($VENV, $I2D_VENV)"
