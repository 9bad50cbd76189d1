"""The control language of port 1337, pure: a line in, response lines out; no sockets here.

Framing (``LineReader``): one command per line ending in ``\\n``; a ``\\r`` before it is dropped;
blank lines are ignored. A line longer than ``MAX_LINE`` bytes is refused (the server answers one
error line and closes that connection). Every response, success or error, ends with the line
``_SD_CMD_END_``; an error is exactly one line before it, starting with ``cmd_`` or ``Invalid
request!`` as the original's did.

Commands (``COMMANDS``) are matched exactly (the original matched a prefix, so ``vlistXYZ`` ran
``vlist``). Arguments are ``key=value`` tokens; an unknown key, a token without ``=``, a repeated
key or a bad value is an error naming it and saying what is valid, and an error changes nothing.
``reason=`` takes the rest of the line. ``format=json`` on any command gives one JSON line instead
of the text lines. The text formats are the original's, byte for byte.

Rights: a read-only connection (``control_tcp_readonly``) may run every command but ``CHANGES``.
Every state change is logged at info on ``surealived.control`` with the peer, the command and the
reason, so that a drain can be traced to the uid or address that asked for it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config.main import MainConfig
from ..engine.state import RSTATES, DaemonState, RealState, VirtualState
from ..engine.weights import WeightSpec
from ..errors import ControlError
from ..status.views import real_view, virtual_view
from .process import ProcessInfo

END = "_SD_CMD_END_"
MAX_LINE = 8192
MAX_REASON = 200
U32_UNSET = 4294967295  # what the original printed for a hash table it never created
CHANGES = ("rset", "reload")  # the commands a read-only connection may not run

log = logging.getLogger("surealived.control")


# --- framing ---------------------------------------------------------------------------------

class LineTooLong(Exception):
    """A client sent more than ``MAX_LINE`` bytes without a newline."""


class LineReader:
    """Bytes in, complete lines out (decoded, ``\\r\\n`` stripped)."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        lines = []
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            if end > self.limit:
                raise LineTooLong
            raw = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            lines.append(raw.rstrip(b"\r").decode("utf-8", errors="replace"))
        if len(self.buffer) > self.limit:
            raise LineTooLong
        return lines


# --- requests --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Request:
    command: str
    args: dict[str, str]
    reason: str | None = None

    @property
    def json(self) -> bool:
        return self.args.get("format") == "json"


@dataclass
class Context:
    """What a command may read or call; the server builds one per command from the daemon."""

    state: DaemonState
    maincfg: MainConfig
    process: Callable[[], ProcessInfo] = ProcessInfo
    request_reload: Callable[[], None] | None = None
    watchdog_pid: int = -1
    peer: str = "?"  # who sent the command: "uid 1000 (socket)" or "127.0.0.1:40312"
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """Either text lines (the original's format) or one JSON-able value."""

    lines: list[str] = field(default_factory=list)
    data: Any = None


Handler = Callable[[Request, Context], Reply]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    usage: str
    summary: str
    keys: tuple[str, ...]
    handler: Handler


VIRTUAL_KEYS = ("vproto", "vaddr", "vport", "vfwmark")
_REASON = re.compile(r"(?:^|[ \t])reason=")
_JSON = re.compile(r"(?:^|[ \t])format=json(?:[ \t]|$)")


def _printable(text: str, limit: int = 80) -> str:
    shown = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def parse(line: str) -> Request | ControlError | None:
    """A line to a ``Request`` (or the error to answer, or None for a blank line)."""
    text = line.strip(" \t\r\n")
    if not text:
        return None
    reason = None
    found = _REASON.search(text)
    if found:
        reason = text[found.end():].strip(" \t")
        text = text[:found.start()]
    tokens = text.split()
    if not tokens:
        return ControlError("", f"Invalid request! [{_printable(line)}] "
                                f"(valid commands: {', '.join(COMMANDS)})")
    name = tokens[0]
    command = COMMANDS.get(name)
    if command is None:
        return ControlError("", f"Invalid request! [{_printable(line)}] "
                                f"(valid commands: {', '.join(COMMANDS)})")
    where = f"cmd_{name}"
    args: dict[str, str] = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        if not sep and name == "help" and "command" not in args:
            key, sep, value = "command", "=", token  # "help rset" as well as "help command=rset"
        if not sep:
            return ControlError(where, f"argument without '=' [{_printable(token)}]",
                                command.usage)
        if key not in command.keys and key != "format":
            return ControlError(where, f"unknown argument [{_printable(key)}]", command.usage)
        if key in args:
            return ControlError(where, f"argument given twice [{key}]", command.usage)
        args[key] = value
    if reason is not None and "reason" not in command.keys:
        return ControlError(where, "unknown argument [reason]", command.usage)
    if args.get("format", "text") not in ("text", "json"):
        return ControlError(where, f"format unknown [{_printable(args['format'])}] "
                                   "(valid: text, json)")
    return Request(name, args, reason)


def execute(line: str, ctx: Context) -> list[str]:
    """Run one line; the response lines, terminator included ([] for a blank line)."""
    request = parse(line)
    if request is None:
        return []
    if isinstance(request, ControlError):
        return error_lines(request, bool(_JSON.search(line)))
    as_json = request.json
    if ctx.read_only and request.command in CHANGES:
        log.warning("Control %s by %s refused: read-only connection", request.command,
                    ctx.peer)
        return error_lines(ControlError(
            f"cmd_{request.command}", "read-only connection (control_tcp_readonly); state "
            "changes go through the control socket"), as_json)
    try:
        reply = COMMANDS[request.command].handler(request, ctx)
    except ControlError as exc:
        return error_lines(exc, as_json)
    if as_json:
        return [json.dumps(reply.data, separators=(",", ":")), END]
    return [*reply.lines, END]


def error_lines(error: ControlError, as_json: bool = False) -> list[str]:
    if as_json:
        return [json.dumps({"error": str(error)}, separators=(",", ":")), END]
    return [str(error), END]


# --- argument values -------------------------------------------------------------------------

def _uint(where: str, key: str, text: str, maximum: int) -> int:
    if not text.isdigit() or not text.isascii() or int(text) > maximum:
        raise ControlError(where, f"invalid {key} [{_printable(text)}] (valid: 0..{maximum})")
    return int(text)


def _addr(where: str, key: str, text: str, message: str | None = None) -> str:
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]")).compressed
    except ValueError:
        what = message or f"invalid {key}"
        raise ControlError(where, f"{what} [{_printable(text)}] "
                                  "(valid: an IPv4 or IPv6 address)") from None


def find_virtual(request: Request, ctx: Context) -> tuple[int, VirtualState]:
    """The original's ``sd_cmd_find_virt``: vproto required; vfwmark > 0 wins, else address,
    port and protocol; the first match in XML order."""
    where = "cmd_find_virt"
    usage = COMMANDS[request.command].usage
    args = request.args
    if "vproto" not in args:
        raise ControlError(where, "No vproto specified", usage)
    proto = args["vproto"]
    if proto not in ("tcp", "udp", "fwmark"):
        raise ControlError(where, f"invalid vproto [{_printable(proto)}] "
                                  "(valid: tcp, udp, fwmark)")
    addr = _addr(where, "vaddr", args["vaddr"]) if "vaddr" in args else "0.0.0.0"
    port = _uint(where, "vport", args["vport"], 65535) if "vport" in args else 0
    fwmark = _uint(where, "vfwmark", args["vfwmark"], 2**32 - 1) if "vfwmark" in args else 0
    found = ctx.state.find_virtual(proto, addr, port, fwmark)
    if found is None:
        raise ControlError(where, "Virt not found ('vlist' lists the virtuals)")
    return ctx.state.virtuals.index(found), found


def find_real(request: Request, virtual: VirtualState) -> RealState:
    """The original's ``sd_cmd_find_real``: by IPVS address and port (not testport)."""
    where = "cmd_find_real"
    args = request.args
    if "raddr" not in args:
        raise ControlError(where, "raddr not found", COMMANDS[request.command].usage)
    if "rport" not in args:
        raise ControlError(where, "rport not found", COMMANDS[request.command].usage)
    addr = _addr(where, "raddr", args["raddr"], "invalid IP")
    port = _uint(where, "rport", args["rport"], 65535)
    if not virtual.reals:
        raise ControlError(where, "empty realArr")
    real = virtual.by_key.get((addr, port))
    if real is None:
        raise ControlError(where, "Real not found ('rlist' lists the reals of a virtual)")
    return real


def parse_weight(text: str) -> WeightSpec:
    """``rweight``: ``N`` (0..65535) or ``N%`` (0..100). 0 means weight 0, a drain."""
    percent = text.endswith("%")
    digits = text[:-1] if percent else text
    maximum = 100 if percent else 65535
    if not digits.isascii() or not digits.isdigit() or int(digits) > maximum:
        raise ControlError("cmd_rset", f"rweight invalid [{_printable(text)}] "
                                       "(valid: 0..65535, or 0%..100%)")
    return WeightSpec(int(digits), percent)


# --- formats ---------------------------------------------------------------------------------

def _bool(value: bool) -> str:
    return "TRUE" if value else "FALSE"


def virtual_fields(v: VirtualState) -> str:
    c = v.config
    return (f"vname={c.name} vproto={c.proto} vaddr={c.addr} vport={c.port} vfwmark={c.fwmark} "
            f"vrt={c.rt} vsched={c.sched}")


def real_line(index: int, r: RealState) -> str:
    c = r.config
    line = (f"r:{index} rname={c.name} raddr={c.addr} rport={c.port} currwgt={r.weight} "
            f"confwgt={c.weight} ronline={_bool(r.online)} rstate={r.rstate}")
    # Only when set, so an original client that never sets a reason sees the original line.
    if r.override_reason:
        line += f" reason={r.override_reason}"
    return line


# --- commands --------------------------------------------------------------------------------

def cmd_vlist(request: Request, ctx: Context) -> Reply:
    if request.json:
        return Reply(data={"virtuals": [virtual_view(i, v)
                                        for i, v in enumerate(ctx.state.virtuals)]})
    return Reply([f"v:{i} {virtual_fields(v)}" for i, v in enumerate(ctx.state.virtuals)])


def cmd_rlist(request: Request, ctx: Context) -> Reply:
    index, virtual = find_virtual(request, ctx)
    if request.json:
        return Reply(data={"virtual": virtual_view(index, virtual),
                           "reals": [real_view(j, r) for j, r in enumerate(virtual.reals)]})
    lines = [virtual_fields(virtual)]
    if not virtual.reals:
        lines.append("EMPTY LIST - no reals defined in virtual")
    lines.extend(real_line(j, r) for j, r in enumerate(virtual.reals))
    return Reply(lines)


def cmd_rset(request: Request, ctx: Context) -> Reply:
    where = "cmd_rset"
    args = request.args
    # Every value is checked before anything is looked up or changed: an error changes nothing.
    if "rstate" not in args and "rweight" not in args:
        raise ControlError(where, "you need to set at least 'rstate' or 'rweight'",
                           COMMANDS["rset"].usage)
    rstate = args.get("rstate")
    if rstate is not None and rstate not in RSTATES:
        raise ControlError(where, f"rstate unknown [{_printable(rstate)}] "
                                  f"(valid: {', '.join(RSTATES)})")
    weight = parse_weight(args["rweight"]) if "rweight" in args else None
    reason = request.reason or ""
    if len(reason) > MAX_REASON or not reason.isprintable():
        raise ControlError(where, f"reason invalid (valid: up to {MAX_REASON} printable "
                                  "characters)")
    _, virtual = find_virtual(request, ctx)
    real = find_real(request, virtual)
    # The original's rules: a missing value keeps the previous one; no override at all becomes
    # the XML weight; ONLINE with the XML weight (or 100 %) deletes the override entry.
    final_state = rstate or real.rstate
    override = weight or real.override or WeightSpec(real.config.weight)
    neutral = override in (WeightSpec(real.config.weight), WeightSpec(100, True))
    if final_state == "ONLINE" and neutral:
        ctx.state.set_admin(real, rstate, reason="", clear_override=True)
    else:
        ctx.state.set_admin(real, rstate, override, reason)
    log.info("Control rset by %s: %s rstate=%s weight=%s reason=%s", ctx.peer, real.label,
             final_state, override, reason or "-")
    if request.json:
        return Reply(data={"rstate": final_state, "weight": override.value,
                           "inpercent": override.percent, "reason": real.override_reason,
                           "real": real_view(virtual.reals.index(real), real)})
    return Reply([f"Set: rstate={final_state}, weight={override.value}, "
                  f"inpercent={_bool(override.percent)}"])


def _kv(name: str, value: object) -> str:
    return f"{name:<15}: {value}"


def stats_sections(ctx: Context) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The figures of ``stats`` in the original's order, grouped by section."""
    state = ctx.state
    reals = list(state.reals())
    c = state.counters
    p = ctx.process()
    by_rstate = {s: sum(1 for r in reals if r.rstate == s) for s in RSTATES}
    online = sum(1 for r in reals if r.online)
    offline_size = len(reals) - online if ctx.maincfg.use_offline_dump else U32_UNSET
    override_size = sum(1 for r in reals if r.override is not None or r.rstate != "ONLINE")
    return [
        ("global stats", [("watchdog_pid", ctx.watchdog_pid), ("tester_pid", p.pid),
                          ("virtuals", len(state.virtuals)), ("reals", len(reals))]),
        ("real settings", [("ronline", by_rstate["ONLINE"]), ("roffline", by_rstate["OFFLINE"]),
                           ("rdown", by_rstate["DOWN"]), ("offline_size", offline_size),
                           ("override_size", override_size)]),
        ("real stats", [("success", online), ("failed", len(reals) - online)]),
        ("tests stats", [("t_success", c.t_success), ("t_failed", c.t_failed),
                         ("t_online_set", c.t_online_set), ("t_offline_set", c.t_offline_set),
                         ("t_conn_problem", c.t_conn_problem),
                         ("t_arp_problem", c.t_arp_problem), ("t_rst_problem", c.t_rst_problem),
                         ("t_bytes_rcvd", c.t_bytes_rcvd), ("t_bytes_sent", c.t_bytes_sent)]),
        ("resource usage", [("user_time", p.user_time), ("system_time", p.system_time),
                            ("block_in_ops", p.block_in_ops), ("block_out_ops", p.block_out_ops),
                            ("messages_sent", p.messages_sent),
                            ("messages_rcvd", p.messages_rcvd),
                            ("signals_rcvd", p.signals_rcvd), ("voluntary_ctx", p.voluntary_ctx),
                            ("involunt_ctx", p.involunt_ctx), ("fd_used", p.fd_used)]),
        ("memory usage", [(f"Vm{name}", (value, unit)) for name, value, unit in p.memory]),
    ]


def cmd_stats(request: Request, ctx: Context) -> Reply:
    sections = stats_sections(ctx)
    if request.json:
        data: dict[str, dict[str, Any]] = {}
        for title, items in sections:
            group = data[title.replace(" ", "_")] = {}
            for name, value in items:
                group[name + ("_kb" if title == "memory usage" else "")] = (
                    value[0] if isinstance(value, tuple) else value)
        return Reply(data=data)
    lines: list[str] = []
    for title, items in sections:
        if lines:
            lines.append("")
        lines.append(f"=== {title} ===")
        for name, value in items:
            if isinstance(value, tuple):
                lines.append(f"{name:<14} : {value[0]:<6} {value[1]}")
            elif isinstance(value, float):
                lines.append(_kv(name, f"{value:.6f} sec"))
            else:
                lines.append(_kv(name, value))
    return Reply(lines)


_SENTINEL_MS = {"conn": -1, "arp": -2, "rst": -3}


def _real_figures(r: RealState) -> dict[str, int]:
    """connstats numbers of one real, in µs (the conn sentinels of §10.2 when it failed)."""
    s = r.stats
    last = s.last
    lastconn = (_SENTINEL_MS[last.problem] * 1000 if last.problem in _SENTINEL_MS
                else last.conn_us)
    sconn, sresp, stotal = s.sample_averages()
    n = s.total or 1
    return {"total": s.total, "connprob": s.conn_problem, "arpprob": s.arp_problem,
            "rstprob": s.rst_problem, "lastconn": lastconn, "lastresp": last.resp_us,
            "lasttotal": last.total_us, "savgconn": sconn, "savgresp": sresp,
            "savgtotal": stotal, "tavgconn": s.sum_conn_us // n,
            "tavgresp": s.sum_resp_us // n, "tavgtotal": s.sum_total_us // n}


def _virtual_figures(v: VirtualState, reals: list[dict[str, int]]) -> dict[str, int]:
    n = len(reals) or 1
    return {"samples": v.config.tester.stats_samples, "total": v.rounds,
            "savgconn": sum(f["savgconn"] for f in reals) // n,
            "savgresp": sum(f["savgresp"] for f in reals) // n,
            "savgtotal": sum(f["savgtotal"] for f in reals) // n,
            "connprob": sum(f["connprob"] for f in reals),
            "arpprob": sum(f["arpprob"] for f in reals),
            "rstprob": sum(f["rstprob"] for f in reals)}


def _times(fields: dict[str, int], names: Iterable[str], micro: bool) -> str:
    if micro:
        return " ".join(f"{n}={fields[n]}us" for n in names)
    return " ".join(f"{n}={int(fields[n] / 1000)}ms" for n in names)


def cmd_connstats(request: Request, ctx: Context) -> Reply:
    if not ctx.maincfg.gather_stats:
        if request.json:
            return Reply(data={"gather_stats": False, "virtuals": []})
        return Reply(["Gathering statistics is OFF"])
    lines: list[str] = []
    data = []
    for i, v in enumerate(ctx.state.virtuals):
        figures = [_real_figures(r) for r in v.reals]
        vf = _virtual_figures(v, figures)
        if request.json:
            data.append({**virtual_view(i, v), "stats": vf, "reals": [
                {**real_view(j, r), "stats": f} for j, (r, f) in
                enumerate(zip(v.reals, figures, strict=True))]})
            continue
        avg = _times(vf, ("savgconn", "savgresp", "savgtotal"), v.config.tester.logmicro)
        lines += ["Virtual:",
                  f"v:{i} {virtual_fields(v)} samples={vf['samples']} total={vf['total']} "
                  f"{avg} connprob={vf['connprob']} arpprob={vf['arpprob']} "
                  f"rstprob={vf['rstprob']}", "", "Reals:"]
        c = v.config
        for j, (r, f) in enumerate(zip(v.reals, figures, strict=True)):
            head = (f"vname={c.name} vproto={c.proto} vaddr={c.addr} vport={c.port} "
                    f"vfwmark={c.fwmark} rname={r.config.name} raddr={r.config.addr} "
                    f"rport={r.config.port} total={f['total']} ")
            tag = f"r:{i}.{j}"
            last = ("lastconn", "lastresp", "lasttotal")
            savg = ("savgconn", "savgresp", "savgtotal")
            tavg = ("tavgconn", "tavgresp", "tavgtotal")
            lines += [
                f"{tag} real-stats {head}connprob={f['connprob']} arpprob={f['arpprob']} "
                f"rstprob={f['rstprob']}",
                f"{tag} lstats_ms  {head}{_times(f, last, False)}",
                f"{tag} lstats_us  {head}{_times(f, last, True)}",
                f"{tag} sstats_ms  {head}{_times(f, savg, False)}",
                f"{tag} sstats_us  {head}{_times(f, savg, True)}",
                f"{tag} tstats_ms  {head}{_times(f, tavg, False)}",
                f"{tag} tstats_us  {head}{_times(f, tavg, True)}",
                "",
            ]
        if v.reals:
            lines.append("-----")
        lines.append("")
    if request.json:
        return Reply(data={"gather_stats": True, "virtuals": data})
    return Reply(lines)


def cmd_help(request: Request, ctx: Context) -> Reply:
    wanted = request.args.get("command")
    if wanted is not None and wanted not in COMMANDS:
        raise ControlError("cmd_help", f"no such command [{_printable(wanted)}] "
                                       f"(valid: {', '.join(COMMANDS)})")
    chosen = [COMMANDS[wanted]] if wanted else list(COMMANDS.values())
    if request.json:
        return Reply(data={"commands": [{"name": c.name, "usage": c.usage,
                                         "summary": c.summary} for c in chosen]})
    return Reply([f"{c.usage}  -- {c.summary}" for c in chosen])


def cmd_reload(request: Request, ctx: Context) -> Reply:
    if ctx.request_reload is None:
        raise ControlError("cmd_reload", "reload is not available in this process")
    log.info("Control reload by %s", ctx.peer)
    ctx.request_reload()
    if request.json:
        return Reply(data={"reload": "requested"})
    return Reply(["Reload requested"])


_VSEL = "vproto=tcp|udp|fwmark (vaddr=ADDR vport=PORT | vfwmark=MARK)"
COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("vlist", "vlist [format=json]", "list the virtuals", (), cmd_vlist),
    Command("rlist", f"rlist {_VSEL} [format=json]", "list the reals of one virtual",
            VIRTUAL_KEYS, cmd_rlist),
    Command("rset", f"rset {_VSEL} raddr=ADDR rport=PORT [rstate=ONLINE|OFFLINE|DOWN] "
            "[rweight=N|N%] [format=json] [reason=TEXT TO END OF LINE]",
            "set a real's administrative state and weight (0..65535 or 0%..100%; 0 drains)",
            (*VIRTUAL_KEYS, "raddr", "rport", "rstate", "rweight", "reason"), cmd_rset),
    Command("stats", "stats [format=json]", "process and test counters", (), cmd_stats),
    Command("connstats", "connstats [format=json]", "timing statistics of every real", (),
            cmd_connstats),
    Command("help", "help [NAME] [format=json]", "this list", ("command",), cmd_help),
    Command("reload", "reload [format=json]", "re-read the XML configuration (as SIGHUP)", (),
            cmd_reload),
)}
