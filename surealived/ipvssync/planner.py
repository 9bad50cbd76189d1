"""The plan: wanted table + kernel table -> the ordered operations that make the kernel match.

Pure and deterministic (sorted by address, not by dict or kernel hash order), so a plan can be
printed (``ipvssync --plan``), tested, and applied in one batch. Rules:

* a service missing from the kernel is added, then its dests;
* a service whose scheduler, flags, persistence or netmask differ is *edited* (never deleted and
  re-added: that would drop its connections and its dests);
* a dest whose weight, forwarding method or thresholds differ is edited; weight 0 is a value like
  any other (the real stays, quiesced); a kernel dest the wanted service does not hold is deleted;
* kernel services the wanted table does not hold are left alone, unless ``manage_unmanaged``
  (``-u``), which deletes them first;
* equal means no operation (the original edited every real on every full sync).
"""

from __future__ import annotations

from dataclasses import dataclass

from .table import Dest, Service, ServiceKey, Table, dest_sort_key, host_port

ADD_SERVICE = "add-service"
EDIT_SERVICE = "edit-service"
DEL_SERVICE = "del-service"
ADD_DEST = "add-dest"
EDIT_DEST = "edit-dest"
DEL_DEST = "del-dest"
KINDS = (ADD_SERVICE, EDIT_SERVICE, DEL_SERVICE, ADD_DEST, EDIT_DEST, DEL_DEST)


@dataclass(frozen=True)
class Op:
    """One kernel operation and why it is needed."""

    kind: str
    service: Service
    dest: Dest | None = None
    why: str = ""

    @property
    def is_service(self) -> bool:
        return self.dest is None

    def describe(self) -> str:
        """``add-dest tcp 192.168.0.1:80 (onet) > 10.0.0.1:80 (sg) dr weight=10: why``."""
        text = f"{self.kind} {self.service.label}"
        if self.dest is None:
            if self.kind != DEL_SERVICE:
                text += f" {self.service.settings_text()}"
        else:
            text += f" > {self.dest.label}"
            if self.kind != DEL_DEST:
                text += f" {self.dest.settings_text()}"
        return f"{text}: {self.why}" if self.why else text

    def ipvsadm(self) -> str:
        """The same operation as an ipvsadm command line (for people who think in ipvsadm)."""
        key = self.service.key.ipvsadm
        if self.dest is None:
            if self.kind == DEL_SERVICE:
                return f"ipvsadm -D {key}"
            s = self.service
            text = f"ipvsadm {'-A' if self.kind == ADD_SERVICE else '-E'} {key} -s {s.sched}"
            if s.flags & 0x1:
                text += f" -p {s.timeout}"
                full = 32 if s.key.af == 4 else 128
                if s.netmask != full:
                    text += f" -M {s.netmask}"
            if s.flags & 0x4:
                text += " -o"
            return text
        d = self.dest
        real = host_port(d.addr, d.port)
        if self.kind == DEL_DEST:
            return f"ipvsadm -d {key} -r {real}"
        flag = {"dr": "-g", "masq": "-m", "tun": "-i"}.get(d.fwd, "-g")
        text = (f"ipvsadm {'-a' if self.kind == ADD_DEST else '-e'} {key} -r {real} {flag} "
                f"-w {d.weight}")
        if d.u_thresh:
            text += f" -x {d.u_thresh}"
        if d.l_thresh:
            text += f" -y {d.l_thresh}"
        return text


def plan(wanted: Table, kernel: Table, manage_unmanaged: bool = False) -> list[Op]:
    """Operations, in the order to apply them, that turn ``kernel`` into ``wanted``."""
    ops: list[Op] = []
    if manage_unmanaged:
        for key in sorted(kernel.services.keys() - wanted.services.keys(),
                          key=ServiceKey.sort_key):
            ops.append(Op(DEL_SERVICE, kernel.services[key],
                          why="not in the wanted table (-u)"))
    empty: dict[tuple[str, int], Dest] = {}
    for key in sorted(wanted.services, key=ServiceKey.sort_key):
        want = wanted.services[key]
        have = kernel.services.get(key)
        if have is None:
            ops.append(Op(ADD_SERVICE, want, why="missing in the kernel"))
            have_dests = empty
        else:
            if want != have:
                ops.append(Op(EDIT_SERVICE, want, why=want.changes_from(have)))
            have_dests = kernel.dests.get(key, empty)
        want_dests = wanted.dests.get(key, empty)
        if have_dests:
            for dkey in sorted(have_dests.keys() - want_dests.keys(), key=dest_sort_key):
                ops.append(Op(DEL_DEST, want, have_dests[dkey],
                              why="not in the wanted table"))
        for dkey in sorted(want_dests, key=dest_sort_key):
            dest = want_dests[dkey]
            old = have_dests.get(dkey)
            if old is None:
                ops.append(Op(ADD_DEST, want, dest, why="missing in the kernel"))
            elif old != dest:
                ops.append(Op(EDIT_DEST, want, dest, why=dest.changes_from(old)))
    return ops


def summary(ops: list[Op]) -> str:
    """``3 operations: 1 add-service, 2 add-dest`` (or ``no operations``)."""
    if not ops:
        return "no operations"
    counts = {kind: 0 for kind in KINDS}
    for op in ops:
        counts[op.kind] += 1
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    return f"{len(ops)} operation{'s' if len(ops) != 1 else ''}: {parts}"
