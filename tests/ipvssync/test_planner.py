"""The plan: wanted + kernel -> ordered operations, nothing when equal, edits not delete+add."""

from __future__ import annotations

from surealived.ipvssync.planner import plan, summary
from surealived.ipvssync.table import Dest, ServiceKey, Table, make_service

A = ServiceKey("tcp", "10.0.0.1", 80)
B = ServiceKey("udp", "10.0.0.2", 53)
F = ServiceKey.for_fwmark(7)
X = ServiceKey("tcp", "192.0.2.99", 80)


def table(*entries: tuple) -> Table:
    t = Table()
    for service, dests in entries:
        t.add_service(service)
        for d in dests:
            t.set_dest(service.key, d)
    return t


def kinds(ops):
    return [(op.kind, op.service.key, op.dest.key if op.dest else None) for op in ops]


def test_equal_tables_need_nothing_even_with_weight_zero():
    wanted = table((make_service(A, "wrr", name="a"), [Dest("10.1.0.1", 80, "dr", 0)]))
    kernel = table((make_service(A, "wrr"), [Dest("10.1.0.1", 80, "dr", 0)]))
    assert plan(wanted, kernel, manage_unmanaged=True) == []
    assert summary([]) == "no operations"


def test_empty_kernel_gets_services_before_their_dests_in_address_order():
    wanted = table(
        (make_service(B, "rr"), [Dest("10.1.0.9", 53), Dest("10.1.0.10", 53)]),
        (make_service(A, "wrr"), [Dest("10.1.0.2", 80, weight=5)]),
    )
    assert kinds(plan(wanted, Table())) == [
        ("add-service", A, None), ("add-dest", A, ("10.1.0.2", 80)),
        ("add-service", B, None), ("add-dest", B, ("10.1.0.9", 53)),
        ("add-dest", B, ("10.1.0.10", 53)),
    ]


def test_changed_settings_are_edits_not_delete_and_add():
    wanted = table((make_service(A, "wrr", persistent=300), [Dest("10.1.0.1", 80, "masq", 0)]))
    kernel = table((make_service(A, "wlc"), [Dest("10.1.0.1", 80, "dr", 10)]))
    ops = plan(wanted, kernel)
    assert kinds(ops) == [("edit-service", A, None), ("edit-dest", A, ("10.1.0.1", 80))]
    assert ops[0].why == "sched wlc -> wrr, persistent off -> 300"
    assert ops[1].why == "weight 10 -> 0, forwarding dr -> masq"
    assert ops[1].ipvsadm() == "ipvsadm -e -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 0"


def test_unwanted_dests_go_unmanaged_services_only_with_u():
    wanted = table((make_service(A, "rr"), [Dest("10.1.0.1", 80)]))
    kernel = table((make_service(A, "rr"), [Dest("10.1.0.1", 80), Dest("10.1.0.7", 80)]),
                   (make_service(X, "rr"), [Dest("10.1.0.8", 80)]))
    assert kinds(plan(wanted, kernel)) == [("del-dest", A, ("10.1.0.7", 80))]
    ops = plan(wanted, kernel, manage_unmanaged=True)
    assert kinds(ops) == [("del-service", X, None), ("del-dest", A, ("10.1.0.7", 80))]
    assert ops[0].why == "not in the wanted table (-u)"


def test_fwmark_and_ipv6_netmask_edits():
    v6 = ServiceKey("tcp", "2001:db8::1", 80, 0, 6)
    wanted = table((make_service(F, "sh", persistent=60), []), (make_service(v6, "rr"), []))
    kernel = table((make_service(F, "sh", persistent=60, netmask=24), []),
                   (make_service(v6, "rr"), []))
    ops = plan(wanted, kernel)
    assert kinds(ops) == [("edit-service", F, None)]
    assert ops[0].why == "netmask /24 -> /32"
    assert ops[0].ipvsadm() == "ipvsadm -E -f 7 -s sh -p 60"


def test_names_do_not_count_as_differences():
    wanted = table((make_service(A, "rr", name="web"), [Dest("10.1.0.1", 80, name="r1")]))
    kernel = table((make_service(A, "rr"), [Dest("10.1.0.1", 80)]))
    assert plan(wanted, kernel) == []


def test_plan_is_deterministic_whatever_the_dict_order():
    reals = [Dest(f"10.2.{i % 7}.{i}", 80, weight=i) for i in range(50)]
    one = table((make_service(A, "rr"), reals))
    two = table((make_service(A, "rr"), list(reversed(reals))))
    assert kinds(plan(one, Table())) == kinds(plan(two, Table()))
