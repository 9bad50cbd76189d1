"""ipvssync: make the kernel's IPVS table match the table surealived wants.

``reader`` parses ``ipvsfull.cfg`` and diff lines, ``files`` finds and follows them, ``table``
is the model both sides share, ``planner`` computes the operations, ``netlink`` and ``kernel``
talk to the kernel, ``syncer`` is the loop, ``instance`` keeps it to one process per set of
sync files and ``cli`` is the command line.
"""
