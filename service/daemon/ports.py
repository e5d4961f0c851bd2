"""The API's listening socket, bound before anything else runs.

``envlabel serve`` and ``envlabel demo`` bind first and hand the bound socket to uvicorn
(:class:`envlabel.service.daemon.server.BackgroundServer`), so a port in use is one clear line at once,
not a traceback after the demo built and scanned its estate, and nothing can take the port in between.
Who holds a busy port is looked up best effort: the kernel's socket tables (``/proc/net/tcp``,
``/proc/net/tcp6``) give the listening socket's inode, and a scan of ``/proc/*/fd`` the process holding it
(only this user's processes are readable; elsewhere the message just leaves the owner out).
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from envlabel.errors import EnvlabelError

#: socket states in /proc/net/tcp that hold a port against a new bind: LISTEN, and bound but not listening
_HOLDING_STATES = frozenset({"0A", "07"})


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (``host``, ``port``) and listening, bound the way uvicorn binds one
    (SO_REUSEADDR; IPv6 when ``host`` has a colon). Port 0 picks a free port: read it from the socket.

    Raises :class:`EnvlabelError` with what to do when it cannot be bound (a port in use names the
    process holding it when that can be found)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # listening at once is what holds the port: two SO_REUSEADDR sockets may share a port none listens on
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise EnvlabelError(describe_bind_failure(host, port, exc)) from exc
    return sock


def describe_bind_failure(host: str, port: int, exc: OSError) -> str:
    """One sentence saying why (``host``, ``port``) cannot be listened on and which option fixes it."""
    where = f"cannot listen on {f'[{host}]' if ':' in host else host}:{port}"
    if isinstance(exc, socket.gaierror):
        return f"{where}: the host name {host} does not resolve ({exc.strerror}); choose another with --host"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: port {port} is in use ({port_owner(port)}); choose another with --port"
    if exc.errno == errno.EACCES:
        return (f"{where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); choose "
                "another with --port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine; choose another with --host"
    return f"{where}: {exc.strerror or exc}; choose another --host or --port"


def port_owner(port: int) -> str:
    """``by PID N (command)`` for the process holding ``port``, as far as this user can see."""
    owners = holding_pids(port)
    if not owners:
        return "by a process this user cannot see"
    return "by " + ", ".join(f"PID {pid} ({command_of(pid)})" for pid in owners)


def holding_pids(port: int) -> list[int]:
    """The processes (readable by this user) holding a socket that listens on, or is bound to, ``port``."""
    inodes = socket_inodes(port)
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    pids: list[int] = []
    try:
        processes = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:  # no /proc (not Linux): the owner stays unnamed
        return []
    for process in processes:
        try:
            if any(os.readlink(fd) in wanted for fd in (process / "fd").iterdir()):
                pids.append(int(process.name))
        except OSError:  # another user's process, or one that just ended
            continue
    return sorted(pids)


def socket_inodes(port: int) -> set[str]:
    """Inodes of the IPv4 and IPv6 TCP sockets bound to ``port`` (listening or bound), from /proc/net."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] not in _HOLDING_STATES or fields[9] == "0":
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def command_of(pid: int) -> str:
    """The process's command name, or ``?`` when it cannot be read."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    except OSError:
        return "?"
