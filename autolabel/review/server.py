"""Serving the review app with uvicorn: foreground (the CLI) or in a thread (tests, notebooks).

Both take the workspace folder and the ``review`` config section (host, port, lease, preview
size); neither reads the workspace config.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autolabel.errors import InputError

if TYPE_CHECKING:
    from autolabel.config import ExportConfig, ReviewConfig


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (so the real port is known before serving).

    Raises:
        InputError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


class ReviewServer:
    """uvicorn serving the app in a background thread (tests, notebooks, the benchmark).

    Use as a context manager; ``url`` is set once the socket is bound (port 0 = any free).
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.sock = bind_socket(host, port)
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    def start(self) -> ReviewServer:
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("review server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serve_in_thread(
    workspace: str | Path, review: ReviewConfig | None = None, **app_options: Any
) -> Iterator[ReviewServer]:
    """Serve ``workspace`` in a thread; stop on exit.

    Args:
        workspace: the workspace folder.
        review: the ``review`` section (default: its defaults on a free port; give
            ``port=0`` in a section of your own for a free port too).
        app_options: passed to :func:`autolabel.review.app.create_app`.
    """
    from autolabel.config import ReviewConfig
    from autolabel.review.app import create_app

    cfg = review if review is not None else ReviewConfig(port=0)
    app = create_app(workspace, cfg, **app_options)
    with ReviewServer(app, host=cfg.host, port=cfg.port) as server:
        yield server


def serve(
    workspace: str | Path,
    review: ReviewConfig | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
    export: ExportConfig | None = None,
) -> None:
    """Run the review app in the foreground until Ctrl-C.

    Args:
        workspace: the workspace folder.
        review: the ``review`` section (host, port, lease, preview size).
        on_ready: called with the URL once the socket is bound (the CLI prints it).
        export: the ``export`` section (the gallery's upscale factors).
    """
    import uvicorn

    from autolabel.config import ReviewConfig
    from autolabel.review.app import create_app

    cfg = review if review is not None else ReviewConfig()
    app = create_app(workspace, cfg, export=export)
    sock = bind_socket(cfg.host, cfg.port)
    if on_ready is not None:
        on_ready(_url(cfg.host, int(sock.getsockname()[1])) + "/")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
