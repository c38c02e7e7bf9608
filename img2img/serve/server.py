"""Running the app on uvicorn for `img2img serve`: bind the address first (so the URL printed is
the one listening, port 0 included), then serve until Ctrl-C."""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from ..errors import Img2ImgError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0: a free port), or a one-line error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise Img2ImgError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise Img2ImgError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def run(app: Any, host: str, port: int, *, log_level: str = "info",
        on_listening: Callable[[str], None] = print) -> None:
    """Serve `app` on uvicorn at `host`:`port` until interrupted; `on_listening(url)` is
    called once the socket is bound."""
    import uvicorn

    sock = bind(host, port)
    try:
        on_listening(url_of(sock))
        config = uvicorn.Config(app, log_level=log_level, lifespan="on",
                                timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["bind", "is_loopback", "run", "url_of"]
