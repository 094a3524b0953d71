#!/usr/bin/env bash
# Installs localstripe (PyPI, a stateful fake Stripe server) into the
# virtual environment given as $1, never into the system Python.
set -euo pipefail
venv="${1:?usage: setup.sh VENV_DIR}"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "localstripe==1.15.10"
