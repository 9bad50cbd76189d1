"""Stats log files: the original's block format (ms, us with logmicro, problem sentinels, IPv6)
and the two files (per-virtual per round, combined)."""

from __future__ import annotations

import asyncio

from surealived.config.main import MainConfig
from surealived.engine.state import CheckTiming, RoundReport
from surealived.statslog import StatsLogComponent, round_block
from surealived.tester_api import Result

from .helpers import state_of
from .test_dumps import FakeDaemon

EPOCH = 1705312800.0

XML = """<surealived>
  <virtual name="web" addr="2001:db8::1" port="80" proto="tcp" sched="wrr" rt="dr">
    <tester proto="tcp" testport="80" {micro}/>
    <real name="a" addr="10.0.0.1" port="8080" weight="10"/>
    <real name="b" addr="2001:db8::b" port="80" weight="10"/>
  </virtual></surealived>"""


def report(micro: bool = False) -> RoundReport:
    state = state_of(XML.format(micro='logmicro="1"' if micro else ""))
    v = state.virtuals[0]
    a, b = v.reals
    state.record_result(b, Result.down("refused"), CheckTiming())
    return RoundReport(v, EPOCH, EPOCH + 5.25, (
        (a, Result.up(), CheckTiming(started=EPOCH + 0.1204, conn_us=1500, resp_us=2600,
                                     total_us=4100)),
        (b, Result.down("refused"), CheckTiming(started=EPOCH + 0.2, total_us=300,
                                                resp_us=300, problem="rst"))))


def test_round_block_is_the_originals(utc):
    assert round_block(report()) == (
        "START Virtual: web start time=2024-01-15 10:00:00.000\n"
        "2024-01-15 10:00:00.120 virt=web:80 vproto=tcp vaddr=[2001:db8::1]:80 real=a:8080 "
        "raddr=10.0.0.1:8080 conntime=1ms resptime=2ms totaltime=4ms currtest=TRUE online=TRUE\n"
        "2024-01-15 10:00:00.200 virt=web:80 vproto=tcp vaddr=[2001:db8::1]:80 real=b:80 "
        "raddr=[2001:db8::b]:80 conntime=-3ms resptime=0ms totaltime=0ms currtest=FALSE "
        "online=FALSE\n"
        "END   Virtual: web end time=2024-01-15 10:00:05.250\n"
        "--------------\n")


def test_logmicro_uses_microseconds(utc):
    block = round_block(report(micro=True))
    assert "conntime=1500us resptime=2600us totaltime=4100us" in block
    assert "conntime=-3000us resptime=300us totaltime=300us" in block


def test_files_per_virtual_and_combined(tmp_path, utc):
    r = report()
    d = FakeDaemon(state_of(XML.format(micro="")),
                   MainConfig(stats_dir=str(tmp_path / "stats"), log_stats=True,
                              log_stats_combined=True))
    comp = StatsLogComponent()

    async def scenario() -> None:
        await comp.start(d)
        comp.on_round(r)
        comp.on_round(r)
        await comp.stop(d)

    asyncio.run(scenario())
    one = tmp_path / "stats" / "sd_virtstats_web:80.1705312805"
    assert one.read_text() == round_block(r)
    assert (tmp_path / "stats" / "sd_fullstats.log").read_text() == round_block(r) * 2
    assert (tmp_path / "stats").stat().st_mode & 0o777 == 0o700
