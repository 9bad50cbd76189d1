#!/bin/bash
# The demo command: installs the project into .venv (no root needed) and runs contrib/demo.py:
# three loopback backends, surealived, its control port and files, ipvssync --plan.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/python contrib/demo.py
