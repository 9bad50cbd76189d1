"""Run a program so that no process it starts outlives it: the exec tester's process trees.

A program of a check may leave processes behind: in its process group, in a new session
(``setsid``), or double-forked and adopted by init. Only a *subreaper* (``prctl
PR_SET_CHILD_SUBREAPER``) keeps all of them: an orphan goes to its nearest subreaper ancestor
instead of init. The daemon must not be that subreaper itself (the orphans of every notify
script would become its children, and nothing in asyncio or uvloop reaps children it did not
start), so each program runs under its own *shepherd*:

- one small helper process per daemon (this file run as a script, stdlib only, started at the
  first exec check) receives ``(argv, env)`` and three descriptors over a socket pair: the
  program's stdout and stderr pipes and the check's control socket;
- for each program it forks a shepherd (a fork of the small helper, not of the daemon), which
  becomes a subreaper, starts the program in a new session, writes its exit status on the
  control socket as soon as it exits, then kills and reaps every process left in the tree;
- the daemon closing the control socket (the check's deadline, or the daemon's own death) makes
  the shepherd kill and reap the whole tree at once.

So the verdict comes when the program exits, the pipes reach their end as soon as the tree is
gone, and nothing started by a check survives it. What escapes: a process that another
subreaper below the shepherd keeps (it is still killed, with its parent, when the tree is
ended), or one the daemon's user may not signal (a setuid program that stays; it is logged to
the helper's stderr and left).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36
_KILL_ROUNDS = 1000  # bounds the end of a tree that keeps forking (each round reaps one)
_DEFAULT_SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}  # for programs
_libc: ctypes.CDLL | None = None


# -- both sides ---------------------------------------------------------------------------
def status_line(wait_status: int) -> bytes:
    """The exit status as subprocess reports it (``-N`` for a signal), one line."""
    return b"exit %d\n" % os.waitstatus_to_exitcode(wait_status)


def parse_status(data: bytes) -> int:
    """The program's exit status from the shepherd's line; ``OSError`` when it could not start."""
    kind, _, value = data.strip().partition(b" ")
    if kind == b"exit":
        return int(value)
    if kind == b"error":
        err = int(value)
        raise OSError(err, os.strerror(err))
    raise OSError(f"the exec helper said {data[:80]!r}")


# -- the helper and its shepherds (a separate process; stdlib only) -----------------------
def _become_subreaper() -> None:
    global _libc
    libc = _libc = _libc or ctypes.CDLL(None, use_errno=True)  # once, in the helper
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_CHILD_SUBREAPER): " + os.strerror(err))


def _children() -> list[int]:
    """This process's children (it has one thread, so its task is its pid)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as handle:
            return [int(pid) for pid in handle.read().split()]
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: scan /proc
        kids = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError), \
                        open(f"/proc/{name}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == me:
                        kids.append(int(name))
        return kids


def _end_tree() -> None:
    """Kill and reap every child, and every orphan they leave us, until there is none."""
    for _ in range(_KILL_ROUNDS):
        for pid in _children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                print(f"surealived exec helper: cannot kill pid {pid}", file=sys.stderr)
        try:
            os.waitpid(-1, 0)  # a reaped child's own children are ours before it is a zombie
        except ChildProcessError:
            return


def _shepherd(argv: list[str], env: dict[str, str], ctl: int, out: int, err: int) -> None:
    """Run one program, report its exit, and leave nothing of its tree behind."""
    try:
        _become_subreaper()
        pid = os.posix_spawn(
            argv[0], argv, env, setsid=True, setsigmask=(),
            setsigdef=_DEFAULT_SIGNALS,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                          (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)])
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(ctl, b"error %d\n" % (exc.errno or 5))
        return
    finally:
        os.close(out)
        os.close(err)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(ctl, select.POLLIN)  # the daemon sends nothing: any event is its close
    ready = {fd for fd, _ in poller.poll()}
    if pidfd in ready:
        _, wait_status = os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            os.write(ctl, status_line(wait_status))
    _end_tree()


def _serve(sock: socket.socket) -> None:
    """The helper: one shepherd per request, until the daemon closes its end."""
    _become_subreaper()  # the orphans of a shepherd killed from outside come here
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    shepherds: set[int] = set()
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap(shepherds)
        if sock.fileno() not in ready:
            continue
        data, fds, _, _ = socket.recv_fds(sock, 65536, 3, socket.MSG_CMSG_CLOEXEC)
        if not data:
            return
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            continue
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for fd in (sock.fileno(), wake_r, wake_w):
                    os.close(fd)
                _shepherd(request["argv"], request["env"], *fds)
            except BaseException:
                code = 1
                import traceback
                traceback.print_exc()
            finally:
                os._exit(code)
        shepherds.add(pid)
        for fd in fds:
            os.close(fd)


def _reap(shepherds: set[int]) -> None:
    """Reap ended shepherds; kill what a shepherd killed from outside left to us."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            break
        shepherds.discard(pid)
    for pid in _children():
        if pid not in shepherds:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def helper_main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        _serve(sock)


# -- the daemon's side ----------------------------------------------------------------------
class Helper:
    """The daemon's end of one helper process (one per daemon: ``services.Services``), started
    when first needed and again if it ended. Requests go out in order through one queue: a
    full socket is waited for once, by one writer callback, for all of them."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.owner = 0  # the pid that started it (a fork of the daemon needs its own)
        self.pending: collections.deque[tuple[bytes, list[int], asyncio.Future[None]]] = (
            collections.deque())
        self.writing: asyncio.AbstractEventLoop | None = None  # the loop waiting to write

    def _start(self) -> socket.socket:
        self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        ours.setblocking(False)
        self.sock, self.owner = ours, os.getpid()
        return ours

    def close(self) -> None:
        self._stop_writing()
        if self.sock is not None and self.owner == os.getpid():
            self.sock.close()
        self.sock = None
        if self.proc is not None and self.owner == os.getpid():
            self.proc.poll()  # reaped if it ended; else it ends at the socket's close
        self.proc = None

    async def request(self, argv: list[str], env: dict[str, str], fds: list[int]) -> None:
        """Hand one program and its descriptors to a shepherd (they may be closed once this
        returns or is cancelled: a cancelled request is never sent)."""
        sent = asyncio.get_running_loop().create_future()
        self.pending.append((json.dumps({"argv": argv, "env": env}).encode(), fds, sent))
        self._flush()
        await sent

    async def spawn(self, argv: list[str], env: dict[str, str]) -> Tree:
        """Start ``argv`` (an absolute path first) with ``env``, stdin from /dev/null, under a
        shepherd that ends its whole tree when it exits or when the tree is ended."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await self.request(argv, env, [theirs.fileno(), out_w, err_w])
        except BaseException:
            ctl.close()
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            theirs.close()
            os.close(out_w)
            os.close(err_w)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        ctl.setblocking(False)
        return Tree(ctl, out_r, err_r)

    def _flush(self) -> None:
        restarted = False
        while self.pending:
            message, fds, sent = self.pending[0]
            if sent.done():  # cancelled at the check's deadline
                self.pending.popleft()
                continue
            sock = self.sock if self.sock is not None and self.owner == os.getpid() else None
            try:
                socket.send_fds(sock or self._start(), [message], fds)
            except BlockingIOError:
                return self._wait_writable(sent.get_loop())
            except OSError as exc:
                if exc.errno == errno.ETOOMANYREFS:  # too many descriptors in flight: soon
                    sent.get_loop().call_later(0.01, self._flush)
                    return None
                if restarted:  # a new helper failed at once: this request fails
                    self.pending.popleft()
                    sent.set_exception(exc)
                    continue
                self.close()  # the helper ended: a new one
                restarted = True
                continue
            self.pending.popleft()
            sent.set_result(None)
        self._stop_writing()
        return None

    def _wait_writable(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.writing is None and self.sock is not None:
            loop.add_writer(self.sock.fileno(), self._flush)
            self.writing = loop

    def _stop_writing(self) -> None:
        if self.writing is not None and self.sock is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed
                self.writing.remove_writer(self.sock.fileno())
        self.writing = None


class Tree:
    """One program under its shepherd: the read ends of its output pipes (non-blocking), its
    exit status, and the end of its whole tree."""

    def __init__(self, ctl: socket.socket, stdout: int, stderr: int) -> None:
        self.ctl = ctl
        self.stdout = stdout
        self.stderr = stderr

    async def wait(self) -> int:
        """The program's exit status, as soon as it exits (its tree is being ended then)."""
        loop = asyncio.get_running_loop()
        data = b""
        while not data.endswith(b"\n"):
            chunk = await loop.sock_recv(self.ctl, 64)
            if not chunk:
                raise OSError("the exec helper ended before the program did")
            data += chunk
        return parse_status(data)

    def end(self) -> None:
        """End the whole tree now (the shepherd sees its control socket close)."""
        self.ctl.close()


if __name__ == "__main__":
    helper_main(int(sys.argv[1]))
