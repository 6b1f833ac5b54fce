"""A TCP proxy on 127.0.0.1 that can cut its clients off, as a network partition would.

`cut()` closes every connection to the upstream server (the server sees its clients leave and
rolls back what they had open) while the client side stays open and silent: what the client
sends is dropped and nothing comes back, and new connections are accepted but never answered.
`restore()` closes those silent client connections (the client sees the network return as a
broken connection) and forwards new ones again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self


class TcpProxy:
    """Forwards 127.0.0.1:port to (host, upstream_port) until cut; `connections` counts accepts."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.upstream = (host, upstream_port)
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._cut = False
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._closed = False

    def url_for(self, url: str, upstream_port: int) -> str:
        """`url` with the upstream's port replaced by this proxy's."""
        return url.replace(f":{upstream_port}/", f":{self.port}/")

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()
        return self

    def __exit__(self, *_: object) -> None:
        self._closed = True
        _close(self._listener)
        with self._lock:
            for client, server in self._pairs:
                _close(client)
                if server is not None:
                    _close(server)

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Stop forwarding: close the upstream sides, keep the clients open and silent."""
        with self._lock:
            self._cut = True
            for _, server in self._pairs:
                if server is not None:
                    _close(server)

    def restore(self) -> None:
        """Forward again: the silent client connections are closed, new ones are forwarded."""
        with self._lock:
            self._cut = False
            pairs, self._pairs = self._pairs, []
        for client, _ in pairs:
            _close(client)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with self._lock:
                server = None if self._cut else _connect(self.upstream)
                if server is None and not self._cut:
                    _close(client)  # the server is down: the client sees a refused connection
                    continue
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            if server is not None:
                threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket | None) -> None:
        """Copy source to target while forwarding; drop what arrives while cut."""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                if not self._cut and target is not None:
                    _close(target)  # a side that left closes the other while forwarding
                return
            if self._cut or target is None:
                continue
            try:
                target.sendall(data)
            except OSError:
                if not self._cut:
                    _close(source)
                return


def _connect(address: tuple[str, int]) -> socket.socket | None:
    try:
        sock = socket.create_connection(address, timeout=10)
    except OSError:
        return None
    sock.settimeout(None)
    return sock


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
