"""Kernel tests: ``test_in_vm.py`` boots the VM once and runs ``inside/`` there.

``inside/`` needs a kernel with IPVS and root: it is collected only inside the VM (the runner
sets ``SUREALIVED_IN_VM=1``), never on the host.
"""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("SUREALIVED_IN_VM") == "1" else ["inside"]
