"""Benchmark ipvssync: planning without a kernel (host) and a full sync against ``ipvsadm -R`` (VM).

    .venv/bin/python tests/bench/bench_ipvssync.py            # host part, then the VM part
    .venv/bin/python tests/bench/bench_ipvssync.py --host     # planning only, no VM

Host: plan 100,000 reals (5,000 services x 20) against an empty kernel table and against an equal
one (the cost of each drift check). VM (one boot through contrib/vm/run-in-vm.sh): 10,000 reals
across 500 services, loaded into an empty IPVS table once by ``ipvsadm -R`` and once by
ipvssync (parse ipvsfull.cfg, read the kernel, plan, apply; then the read-back, reported
apart), the same table both times. Prints figures and one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from surealived.ipvssync.planner import plan  # noqa: E402
from surealived.ipvssync.table import Dest, ServiceKey, Table, make_service  # noqa: E402


def build_table(services: int, reals: int) -> Table:
    table = Table()
    for s in range(services):
        key = ServiceKey("tcp", f"10.{s // 250}.{s % 250}.1", 80)
        table.add_service(make_service(key, "wrr", name=f"v{s}"))
        for r in range(reals):
            n = s * reals + r
            table.set_dest(key, Dest(f"172.{16 + n // 65000}.{n // 250 % 260 % 256}.{n % 250 + 1}",
                                     80, "dr", 1 + r % 10, name=f"r{r}"))
    return table


def best_of(times: int, fn) -> float:
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def host_part() -> dict[str, float]:
    wanted = build_table(5000, 20)
    kernel = wanted.copy()
    empty = Table()
    t_empty = best_of(3, lambda: plan(wanted, empty))
    t_equal = best_of(3, lambda: plan(wanted, kernel, manage_unmanaged=True))
    assert len(plan(wanted, empty)) == 105_000 and plan(wanted, kernel) == []
    print(f"plan 100,000 reals / 5,000 services, empty kernel: {t_empty:.3f} s "
          "(105,000 operations)")
    print(f"plan 100,000 reals / 5,000 services, equal kernel: {t_equal:.3f} s (no operations)")
    return {"plan_100k_empty_s": round(t_empty, 4), "plan_100k_equal_s": round(t_equal, 4)}


def snapshot_text(table: Table, diff: str) -> str:
    lines = [f"meta version=1.0 mdate=2024-01-15 mtime=10:00:00\n\nDIFF file={diff}\n"]
    for key, service in table.services.items():
        lines.append(f"\nvirtual vname={service.name} vproto=tcp vaddr={key.addr} "
                     f"vport={key.port} vrt=dr vsched={service.sched}\n")
        lines += [f"real rname={d.name} raddr={d.addr} rport={d.port} rweight={d.weight}\n"
                  for d in table.dests[key].values()]
    return "".join(lines) + "\n"


def ipvsadm_rules(table: Table) -> str:
    out = []
    for key, service in table.services.items():
        out.append(f"-A -t {key.addr}:{key.port} -s {service.sched}\n")
        out += [f"-a -t {key.addr}:{key.port} -r {d.addr}:{d.port} -g -w {d.weight}\n"
                for d in table.dests[key].values()]
    return "".join(out)


def vm_part() -> dict[str, float]:
    from surealived.ipvssync.files import SyncPaths, load_wanted
    from surealived.ipvssync.kernel import open_kernel

    table = build_table(500, 20)
    work = Path(tempfile.mkdtemp())
    (work / "diffs").mkdir()
    (work / "diffs" / "diff_sync.1").write_text("")
    (work / "ipvsfull.lock").write_text("")
    (work / "ipvsfull.cfg").write_text(snapshot_text(table, str(work / "diffs/diff_sync.1")))
    rules = ipvsadm_rules(table)

    def count() -> int:
        text = subprocess.run(["ipvsadm", "-Ln"], capture_output=True, text=True).stdout
        return sum(1 for line in text.splitlines()
                   if line.strip().startswith("->") and "RemoteAddress" not in line)

    t0 = time.perf_counter()
    kernel = open_kernel()
    t_open = time.perf_counter() - t0
    results: dict[str, float] = {"open_s": round(t_open, 3)}
    ipvsadm_times, ours, confirm, noop = [], [], [], []
    for _ in range(2):
        kernel.flush()
        start = time.perf_counter()
        subprocess.run(["ipvsadm", "-R"], input=rules, text=True, check=True)
        ipvsadm_times.append(time.perf_counter() - start)
        loaded = kernel.read_table()
        assert loaded.count_dests() == 10_000 and plan(table, loaded) == []
        kernel.flush()
        start = time.perf_counter()
        wanted = load_wanted(SyncPaths.from_dir(str(work))).table
        have = kernel.read_table()
        ops = plan(wanted, have)
        failures = [r for r in kernel.apply(ops) if r[0]]
        ours.append(time.perf_counter() - start)
        assert not failures and len(ops) == 10_500, (failures[:3], len(ops))
        start = time.perf_counter()
        left = plan(wanted, kernel.read_table())
        confirm.append(time.perf_counter() - start)
        assert left == [] and count() == 10_000, count()
        start = time.perf_counter()
        assert plan(wanted, kernel.read_table()) == []
        noop.append(time.perf_counter() - start)
    kernel.close()
    results.update(ipvsadm_R_s=round(min(ipvsadm_times), 3), ipvssync_s=round(min(ours), 3),
                   ipvssync_readback_s=round(min(confirm), 3),
                   drift_check_s=round(min(noop), 3))
    results["ratio"] = round(results["ipvssync_s"] / results["ipvsadm_R_s"], 2)
    print("VM (TCG): 10,000 reals / 500 services into an empty table, best of 2:")
    print(f"  ipvsadm -R                          {results['ipvsadm_R_s']:.3f} s")
    print(f"  ipvssync parse+read+plan+apply      {results['ipvssync_s']:.3f} s "
          f"(ratio {results['ratio']:.2f})")
    print(f"  ipvssync read-back and compare      {results['ipvssync_readback_s']:.3f} s")
    print(f"  drift check on an equal table       {results['drift_check_s']:.3f} s")
    print(f"  (opening IPVS through pyroute2, once: {t_open:.2f} s)")
    return results


def main() -> None:
    if "--inside" in sys.argv:
        print("VM-RESULTS " + json.dumps(vm_part()))
        return
    figures: dict[str, object] = dict(host_part())
    if "--host" not in sys.argv:
        runner = ROOT / "contrib" / "vm" / "run-in-vm.sh"
        command = f"cd {ROOT} && .venv/bin/python tests/bench/bench_ipvssync.py --inside"
        done = subprocess.run([str(runner), command], capture_output=True, text=True,
                              env={**os.environ, "IVM_TIMEOUT": "600"})
        for line in done.stdout.splitlines():
            if line.startswith("VM-RESULTS "):
                figures.update(json.loads(line[len("VM-RESULTS "):]))
            else:
                print(line)
        if done.returncode:
            print(f"VM part failed (exit {done.returncode}): {done.stderr[-2000:]}")
    print(json.dumps({"bench": "ipvssync", **figures}))


if __name__ == "__main__":
    main()
