"""A TCP proxy the tests put between a worker and Postgres or Redis, to make network faults.

- `down()`: every connection is reset and new ones are refused, as when the server restarts.
- `blackhole()`: connections stay open but nothing passes in either direction, and new ones are
  accepted but never answered: a network partition, where the peer is silent rather than gone.
- `strand()`: the partition healed but the server forgot every connection of before (it
  restarted, or NAT/conntrack state was lost): those stay open and silent, new ones work.
- `heal()`: traffic flows again. Connections that lived through a blackhole resume, with what
  was held; those accepted during it were never answered and are reset.
"""

import contextlib
import select
import socket
import threading
from urllib.parse import urlsplit

from testsupport import free_port


class FaultyProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.mode = "up"
        self.pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self.stranded: list[socket.socket] = []  # client sockets kept open and silent
        self.lock = threading.Lock()
        self.listener = None
        self._listen()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _listen(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.2)
        self.listener = listener

    def _accept_loop(self):
        while True:
            listener = self.listener
            if listener is None:
                threading.Event().wait(0.1)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "blackhole":
                with self.lock:
                    self.pairs.append((client, None))  # accepted, never answered
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client, server):
        sockets = [client, server]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 0.2)
                if self.mode == "blackhole":
                    continue  # hold everything: neither side hears from the other
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return self._close(client, server)
                    (server if sock is client else client).sendall(data)
        except (OSError, ValueError):  # ValueError: a socket closed by down() or heal()
            if client not in self.stranded:
                self._close(client, server)

    @staticmethod
    def _close(*socks):
        for sock in socks:
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                sock.close()  # linger 0: a reset, as from a dead server

    def _cut_all(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for client, server in pairs:
            self._close(client, server)

    def down(self):
        self.mode = "down"
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        self._cut_all()

    def blackhole(self):
        self.mode = "blackhole"

    def strand(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for client, server in pairs:
            self.stranded.append(client)  # stays open: it never hears again
            if server is not None:
                self._close(server)

    def heal(self):
        with self.lock:
            unanswered = [pair for pair in self.pairs if pair[1] is None]
            self.pairs = [pair for pair in self.pairs if pair[1] is not None]
        for client, _ in unanswered:
            self._close(client)
        if self.listener is None:
            self._listen()
        self.mode = "up"


def through(proxy: FaultyProxy, url: str) -> str:
    """`url` with its port replaced by the proxy's."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{proxy.port}")).geturl()
