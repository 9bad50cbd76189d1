#!/bin/sh
# Run the end-to-end LVS test (tests/e2e/lvs_e2e.py; tests/e2e/README.md describes it) in a
# throw-away VM with a real IPVS kernel: network namespaces for three backends and a client,
# surealived and ipvssync on the director, a backend killed, brought back, drained over the
# control port. Prints the timeline and the checks; exit status 0 when every check passed.
# usage: contrib/e2e/run.sh          (needs what contrib/vm/run-in-vm.sh needs, plus ipvsadm)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
py=${E2E_PYTHON:-$top/.venv/bin/python}
IVM_TIMEOUT=${IVM_TIMEOUT:-300} exec "$top/contrib/vm/run-in-vm.sh" \
  "$py $top/tests/e2e/lvs_e2e.py"
