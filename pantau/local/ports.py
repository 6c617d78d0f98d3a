"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import errno
import socket
from contextlib import ExitStack

from pantau.errors import UserError

LOOPBACK = "127.0.0.1"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct ports that nothing listens on right now.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out
    the same port twice. A small race remains until the service binds it; services
    here start within a second, so that is accepted.
    """
    with ExitStack() as sockets:
        ports: list[int] = []
        for _ in range(count):
            sock = sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = LOOPBACK) -> int:
    return free_ports(1, host)[0]


def accepts_connections(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def listening_socket(host: str, port: int, what: str) -> socket.socket:
    """A TCP socket bound to host:port and listening, for a server to take over; a port
    already taken raises a UserError that says what to do instead of an OSError."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {host} is already in use (another {what} running?): "
                "stop that process, or choose a free port with --port"
            ) from None
        raise
    return sock


class PortInUse(UserError):
    pass
