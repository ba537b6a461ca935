"""An HTTP server of the test bed's own (the Cloud SQL emulator, the fault proxy) run in a
background thread: started on demand, its endpoint known once bound, stopped cleanly.

Standard library only, like the servers that use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer


class ServerThread:
    def __init__(self, make_server: Callable[[], ThreadingHTTPServer], name: str) -> None:
        self._make_server = make_server
        self._name = name
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """http://host:port of the bound server."""
        if self._server is None:
            raise RuntimeError(f"the {self._name} is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"the {self._name} is already started")
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits at most one poll
            name=self._name,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()
