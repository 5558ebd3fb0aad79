"""Real alert channels on loopback: an HTTP server taking Apprise ``json://`` posts, and an SMTP server.

Fixtures (registered through ``pytest_plugins`` in the alert test modules):

- ``json_channel`` -> :class:`JsonReceiver`: ``.url`` (a ``json://127.0.0.1:PORT/hook``
  Apprise URL), ``.posts`` (the JSON bodies received), ``.down = True`` (answer HTTP 503),
  ``.wait_posts(n)``; and ``AIRQ_NB_ALERT_TEAM`` set to its URL.
- ``smtp_channel`` -> :class:`MailReceiver`: an aiosmtpd server; ``.url`` (``mailto://``
  without TLS or login, as Apprise speaks to a plain local SMTP), ``.messages``
  (``email.message.Message``), ``.wait_messages(n)``; and ``AIRQ_NB_ALERT_MAIL`` set.
"""

from __future__ import annotations

import email
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class JsonReceiver:
    """A webhook endpoint: records each JSON body Apprise posts, or answers 503 while down."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.refused = 0
        self.down = False
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    if receiver.down:
                        receiver.refused += 1
                        status = 503
                    else:
                        receiver.posts.append(json.loads(body))
                        status = 200
                    receiver._lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def titles(self) -> list[str]:
        with self._lock:
            return [post["title"] for post in self.posts]

    def wait_posts(self, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.posts) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} posts, got {self.posts}")
                self._lock.wait(left)
            return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MailReceiver:
    """An aiosmtpd SMTP server on loopback keeping every message it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.Message] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = email.message_from_bytes(envelope.original_content)
                with receiver._lock:
                    receiver.messages.append(message)
                    receiver._lock.notify_all()
                return "250 OK"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        # mailto:// (not mailtos://) is Apprise's insecure mode: no STARTTLS; no user, no login.
        return (
            f"mailto://127.0.0.1:{self.port}?from=airq@example.org&to=ops@example.org&mode=insecure"
        )

    def wait_messages(self, count: int, *, timeout: float = 10.0) -> list[email.message.Message]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} mails, got {len(self.messages)}")
                self._lock.wait(left)
            return list(self.messages)

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def json_channel(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonReceiver]:
    receiver = JsonReceiver()
    monkeypatch.setenv("AIRQ_NB_ALERT_TEAM", receiver.url)
    monkeypatch.setenv("AIRQ_NB_ALERT_DEFAULT", receiver.url)
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def smtp_channel(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailReceiver]:
    receiver = MailReceiver()
    monkeypatch.setenv("AIRQ_NB_ALERT_MAIL", receiver.url)
    try:
        yield receiver
    finally:
        receiver.close()
