#!/bin/bash
# The test command: installs what the tests need on a fresh Debian machine (Debian packages,
# a virtualenv with the project and its test dependencies), then runs the whole suite,
# kernel tests in a qemu VM included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
contrib/ci-deps.sh
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/pytest -q "$@"
