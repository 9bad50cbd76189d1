"""The build: the check path's modules compiled to C with mypyc, the rest left as Python.

Every check runs through these modules, so compiling them is most of the CPU a check costs in
Python (half of it, counted in instructions). The source stays plain, type-checked Python and
runs the same uncompiled: ``SUREALIVED_PURE_PYTHON=1`` at install time builds nothing (a
machine with no C compiler, or a profile by function with cProfile, which does not see
compiled functions).
"""

import os

from setuptools import setup

# the modules a check runs through, from its start to its verdict
CHECK_PATH = [
    "surealived/engine/buffer.py",
    "surealived/engine/flight.py",
    "surealived/engine/probe.py",
    "surealived/engine/requests.py",
    "surealived/engine/sockets.py",
    "surealived/engine/scheduler.py",
    "surealived/engine/state.py",
    "surealived/engine/verdict.py",
    "builtin_testers/http.py",
    "builtin_testers/tcp.py",
]


def compiled() -> list:
    if os.environ.get("SUREALIVED_PURE_PYTHON"):
        return []
    from mypyc.build import mypycify

    return mypycify(CHECK_PATH, opt_level="3", group_name="surealived_compiled")


setup(ext_modules=compiled())
