"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket
from contextlib import ExitStack

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
