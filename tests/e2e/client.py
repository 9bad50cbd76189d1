#!/usr/bin/env python3
"""The client of the end-to-end test: a bounded stream of HTTP requests to one or more VIPs.

    client.py OUT.jsonl ADDR:PORT[,ADDR:PORT...] [--gap S] [--timeout S] [--max-seconds S]

One request per TCP connection, the targets in turn, ``--gap`` seconds between requests, each
connect and each read bounded by ``--timeout``. Every request becomes one JSON line in OUT
(flushed at once, so another process can follow it)::

    {"i": 7, "t0": 812.31, "t1": 812.33, "vip": "10.0.0.100:80", "result": "rs2", "detail": ""}

``t0``/``t1`` are CLOCK_MONOTONIC seconds at the start and end of the request (the same clock
in every network namespace of the machine). ``result`` is the backend's name, or the failure:
``refused`` (RST to the SYN), ``ctimeout`` (no answer to the SYN), ``rtimeout`` (connected, no
reply), ``reset``, ``badreply`` or ``error``. Stops on SIGTERM/SIGINT or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import time
from types import FrameType


class Stop:
    def __init__(self) -> None:
        self.stopped = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.stopped = True


def request(addr: str, port: int, timeout: float) -> tuple[str, str]:
    """One GET on a new connection: (backend name or failure kind, detail)."""
    try:
        sock = socket.create_connection((addr, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused", ""
    except TimeoutError:
        return "ctimeout", ""
    except OSError as exc:
        return "error", f"connect: {exc}"
    with sock:
        try:
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
            data = b""
            while len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            return "rtimeout", ""
        except ConnectionResetError:
            return "reset", ""
        except OSError as exc:
            return "error", f"read: {exc}"
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") or not body.split():
        return "badreply", head[:60].decode("latin-1")
    words = body.decode("latin-1").split()
    return words[0], " ".join(words[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("targets")
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    targets = []
    for text in args.targets.split(","):
        host, _, port = text.rpartition(":")
        targets.append((host, int(port), text))
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    end = time.monotonic() + args.max_seconds
    with open(args.out, "a", buffering=1) as out:
        i = 0
        while not stop.stopped and time.monotonic() < end:
            host, port, text = targets[i % len(targets)]
            t0 = time.monotonic()
            result, detail = request(host, port, args.timeout)
            t1 = time.monotonic()
            out.write(json.dumps({"i": i, "t0": round(t0, 4), "t1": round(t1, 4), "vip": text,
                                  "result": result, "detail": detail}) + "\n")
            i += 1
            time.sleep(args.gap)


if __name__ == "__main__":
    main()
