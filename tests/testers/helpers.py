"""Run one check of one built-in tester against a loopback server, as the engine would."""

from __future__ import annotations

from typing import Any

from surealived.config.attrs import convert, default_of
from surealived.config.model import FrozenOptions
from surealived.engine.flight import run_check
from surealived.engine.state import CheckTiming
from surealived.engine.transcript import Transcript
from surealived.registry import bind_services
from surealived.services import Services
from surealived.tester_api import Result, Target, Tester

SERVICES = Services()  # the daemon-owned services of the testers' tests (one exec helper)


def settings(cls: type[Tester], **text: str) -> FrozenOptions:
    """The tester's options as the XML reader builds them from attribute text."""
    values = {a.name: convert(a, text[a.name], "/") if a.name in text else default_of(a, "/")
              for a in cls.attributes}
    return FrozenOptions(values)


async def check(cls: type[Tester], port: int, addr: str = "127.0.0.1", *, timeout: float = 3.0,
                transcript: Transcript | None = None, target: dict[str, Any] | None = None,
                **text: str) -> tuple[Result, CheckTiming]:
    options = settings(cls, **text)
    tgt = Target(addr=addr, port=port, rname="r1", rport=80, vname="v1", vaddr="192.0.2.1",
                 vport=80, vproto="tcp", vfwmark=0, timeout=timeout, **(target or {}))
    if cls.uses:  # as a registry hands it to the engine, with the tests' own services
        cls = bind_services(cls, SERVICES)
    return await run_check(cls(options), tgt, options, transcript=transcript)
