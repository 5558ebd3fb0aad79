"""Fake OpenWeatherMap and Open-Meteo servers on 127.0.0.1, speaking each API's exact format.

Fixtures (registered for every test module through ``pytest_plugins`` in conftest.py):

- ``openweathermap_server`` -> :class:`FakeOpenWeatherMap` (``.url``, ``.api_key``)
- ``openmeteo_server`` -> :class:`FakeOpenMeteo` (``.url``)
- ``fake_api_env`` -> environment variables pointing airq_nb at both (for subprocesses)

By default a server answers every whole hour of the window asked for with deterministic
values (:func:`default_pm2_5` etc.). Scripted behaviour::

    server.set_data(start, end, pm2_5=12.0, pm10=20.0)  # serve exactly these hours instead
    server.fail(500, times=2)                           # next 2 requests get HTTP 500
    server.fail(429, retry_after="2")                   # every request: 429 + Retry-After
    server.malform("html", times=1)                     # see MALFORMED_KINDS
    server.delay = 2.0                                  # answer slowly (client time-outs)
    server.drop_connection(times=1)                     # hang up without a reply
    server.requests                                     # what it received (RecordedRequest)
    server.wait_idle(requests=3)                        # 3 arrived and all were answered

A request takes its scripted action the moment it arrives, before any ``delay``, so a
request a client gave up on never takes a failure scripted after it arrived.

Use ``.url`` as ``base_url=`` or in ``AIRQ_NB_OPENWEATHER_URL`` / ``AIRQ_NB_OPENMETEO_URL``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest

HOUR = 3600

#: Ways a reply can be broken, for ``server.malform(kind)``.
MALFORMED_KINDS = (
    "truncated",  # valid JSON cut off half-way
    "html",  # an HTML error page with status 200
    "not_json",  # plain text
    "wrong_types",  # strings where numbers belong
    "negative",  # a negative concentration
    "absurd",  # a concentration of 99,999 µg/m³
    "nan",  # NaN (which strict JSON does not allow)
    "outside_window",  # an hour before the window asked for
    "non_hourly",  # a time at half past
    "missing_field",  # a required field left out
    "deep",  # arrays nested 100,000 deep (valid JSON that exhausts a recursive parser)
)

Value = float | None | Callable[[int], float | None]


def default_pm2_5(hour: int) -> float:
    """The PM2.5 a fake serves for ``hour`` (Unix seconds) unless told otherwise."""
    return round(8.0 + (hour // HOUR) % 24 * 0.5, 2)


def default_pm10(hour: int) -> float:
    """The PM10 a fake serves for ``hour`` unless told otherwise."""
    return round(2 * default_pm2_5(hour) + 1.0, 2)


def default_aqi(hour: int) -> int:
    """The OpenWeatherMap AQI (1-5) a fake serves for ``hour``."""
    return 1 + (hour // HOUR) % 5


@dataclass(frozen=True)
class RecordedRequest:
    """One request a fake server received."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    body: str
    content_type: str


@dataclass
class _Malformation:
    kind: str


class _Drop:
    """Close the connection without answering (a proxy or server dying mid-request)."""


@dataclass
class FakeServer:
    """Shared machinery: an HTTP server in a thread, scripted failures, recorded requests."""

    delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)
    _script: list[tuple[Any, int | None]] = field(default_factory=list)
    _data: dict[int, dict[str, Any]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _in_flight: int = 0

    def __post_init__(self) -> None:
        # Signalled whenever a request arrives or is answered (wait_requests, wait_idle).
        self._changed = threading.Condition(self._lock)

    # -- controlling the fake ------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_data(
        self,
        start: float | datetime,
        end: float | datetime,
        *,
        pm2_5: Value = default_pm2_5,
        pm10: Value = default_pm10,
        aqi: int | Callable[[int], int] = default_aqi,
    ) -> None:
        """Serve exactly these hours from ``start`` to ``end`` (inclusive) from now on.

        Each value is a number, None (Open-Meteo null), or a function of the hour. Calls
        add up; hours never set are absent (OpenWeatherMap) or null (Open-Meteo).
        """
        first, last = _unix(start), _unix(end)
        data = {} if self._data is None else self._data
        hour = math.ceil(first / HOUR) * HOUR
        while hour <= last:
            data[hour] = {
                "pm2_5": pm2_5(hour) if callable(pm2_5) else pm2_5,
                "pm10": pm10(hour) if callable(pm10) else pm10,
                "aqi": aqi(hour) if callable(aqi) else aqi,
            }
            hour += HOUR
        self._data = data

    def clear_data(self) -> None:
        """Go back to answering every hour asked for with the default values."""
        self._data = None

    def fail(
        self,
        status: int,
        *,
        times: int | None = None,
        retry_after: str | int | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> None:
        """Answer the next ``times`` requests (all, if None) with HTTP ``status``."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        if body is None:
            body = self.error_body(status)
        text = body if isinstance(body, str) else json.dumps(body)
        self._script.append((_Failure(status, headers, text, content_type), times))

    def malform(self, kind: str, *, times: int | None = None) -> None:
        """Answer the next ``times`` requests (all, if None) with a broken reply of ``kind``."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {MALFORMED_KINDS}")
        self._script.append((_Malformation(kind), times))

    def drop_connection(self, *, times: int | None = None) -> None:
        """Close the next ``times`` connections (all, if None) without sending a reply."""
        self._script.append((_Drop(), times))

    def wait_requests(self, count: int, *, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` requests have arrived (each has taken its action)."""
        self._wait(lambda: len(self.requests) >= count, f"{count} request(s)", timeout)

    def wait_idle(self, *, requests: int = 0, timeout: float = 10.0) -> None:
        """Wait until at least ``requests`` have arrived and none is still being answered
        (e.g. one still in its ``delay`` after the client gave up on it)."""
        self._wait(
            lambda: len(self.requests) >= requests and not self._in_flight,
            f"{requests} request(s) answered",
            timeout,
        )

    def _wait(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise TimeoutError(
                    f"fake server: waited {timeout:g} s for {what}; "
                    f"{len(self.requests)} arrived, {self._in_flight} in flight"
                )

    def reset(self) -> None:
        """Forget scripted failures, delay, data and recorded requests."""
        self._script.clear()
        self.requests.clear()
        self._data = None
        self.delay = 0.0

    # -- what subclasses provide ----------------------------------------------------------

    path = "/"

    def error_body(self, status: int) -> Any:
        return {"error": True, "reason": f"HTTP {status}"}

    def route(self, path: str, params: dict[str, str]) -> tuple[int, Any] | None:
        """(status, body) for a request to ``path``, or None for 404. APIs with one
        operation at ``self.path`` answer with :meth:`answer`; others override this."""
        return self.answer(params) if path == self.path else None

    def answer(self, params: dict[str, str]) -> tuple[int, Any]:
        """(status, JSON body) for a well-formed request."""
        raise NotImplementedError

    def break_reply(self, kind: str, body: Any) -> Any:
        """``body`` damaged the way ``kind`` says (a dict, or a str to send as it is)."""
        raise NotImplementedError

    def hours(self, first: int, last: int) -> list[tuple[int, dict[str, Any] | None]]:
        """(hour, values) for each whole hour from ``first`` to ``last``; None if unset."""
        out = []
        hour = math.ceil(first / HOUR) * HOUR
        while hour <= last:
            if self._data is None:
                values = {
                    "pm2_5": default_pm2_5(hour),
                    "pm10": default_pm10(hour),
                    "aqi": default_aqi(hour),
                }
            else:
                values = self._data.get(hour)
            out.append((hour, values))
            hour += HOUR
        return out

    # -- serving ----------------------------------------------------------------------------

    def _take_scripted(self) -> Any:
        """The next scripted action, used up by this request (call with the lock held)."""
        if not self._script:
            return None
        action, times = self._script[0]
        if times is not None:
            if times <= 1:
                self._script.pop(0)
            else:
                self._script[0] = (action, times - 1)
        return action

    def _respond(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        with self._changed:
            self.requests.append(
                RecordedRequest(
                    handler.command, split.path, params, dict(handler.headers), time.time()
                )
            )
            # On arrival, in the same step as the record: a request still in its delay when
            # the test scripts the next failure must not take that failure.
            action = self._take_scripted()
            delay = self.delay
            self._in_flight += 1
            self._changed.notify_all()
        try:
            if delay:
                time.sleep(delay)
            self._act(handler, split.path, params, action)
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def _act(
        self, handler: BaseHTTPRequestHandler, path: str, params: dict[str, str], action: Any
    ) -> None:
        if isinstance(action, _Drop):
            handler.close_connection = True
            return None
        extra = self.reply_headers()
        if isinstance(action, _Failure):
            headers = {**extra, **action.headers}
            return _send(handler, action.status, action.body, action.content_type, headers)
        refused = self.refuse(handler)
        if refused is not None:
            return _send(handler, refused, json.dumps(self.error_body(refused)),
                         "application/json", extra)  # fmt: skip
        routed = self.route(path, params)
        if routed is None:
            return _send(handler, 404, json.dumps(self.error_body(404)), "application/json")
        status, body = routed
        if isinstance(action, _Malformation) and status == 200:
            broken = self.break_reply(action.kind, body)
            if isinstance(broken, tuple):
                return _send(handler, 200, broken[0], broken[1], extra)
            body = broken
        _send(handler, status, self.encode(body), "application/json; charset=utf-8", extra)

    def reply_headers(self) -> dict[str, str]:
        """Headers every reply carries (an API's rate-limit headers); none by default."""
        return {}

    def refuse(self, handler: BaseHTTPRequestHandler) -> int | None:
        """The status a request is refused with before routing (a missing key), or None."""
        return None

    def encode(self, body: Any) -> str:
        """The text sent for a JSON ``body`` (a str is sent as it is)."""
        return body if isinstance(body, str) else json.dumps(body)

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._respond(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (each test's teardown) fast.
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    text: str,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    payload = text.encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (a time-out test)


def _unix(when: float | datetime) -> int:
    return int(when.timestamp() if isinstance(when, datetime) else when)


def _truncated(body: Any) -> tuple[str, str]:
    text = json.dumps(body)
    return text[: max(1, len(text) // 2)], "application/json"


_NAN_MARK = "__NaN__"


def _with_nan(body: Any) -> tuple[str, str]:
    # Python's json writes NaN happily; the real APIs never would (it is not JSON).
    return json.dumps(body).replace(f'"{_NAN_MARK}"', "NaN"), "application/json"


# Valid JSON, but deeper than Python's json module (or any sane reply) goes.
DEEP_JSON = "[" * 100_000 + "]" * 100_000

_HTML = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>nginx</p></body></html>"
)


# -- OpenWeatherMap ---------------------------------------------------------------------------


@dataclass
class FakeOpenWeatherMap(FakeServer):
    """``GET /data/2.5/air_pollution/history?lat&lon&start&end&appid`` as OpenWeatherMap answers.

    ``coord_style`` "object" is what the live API sends; "array" is what its docs show.
    """

    api_key: str = "owm-test-key-5f1c2e9a7b3d"
    coord_style: str = "object"
    path = "/data/2.5/air_pollution/history"

    def error_body(self, status: int) -> Any:
        if status == 401:
            return {
                "cod": 401,
                "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 "
                "for more info.",
            }
        return {"cod": str(status), "message": f"HTTP {status}"}

    def answer(self, params: dict[str, str]) -> tuple[int, Any]:
        if params.get("appid") != self.api_key:
            return 401, self.error_body(401)
        try:
            lat, lon = float(params["lat"]), float(params["lon"])
            start, end = int(params["start"]), int(params["end"])
        except (KeyError, ValueError):
            return 400, {"cod": "400", "message": "wrong latitude, longitude, start or end"}
        coord: Any = {"lon": lon, "lat": lat} if self.coord_style == "object" else [lon, lat]
        items = [
            {
                "main": {"aqi": values["aqi"]},
                "components": {
                    "co": 230.31,
                    "no": 0.12,
                    "no2": 14.2,
                    "o3": 48.6,
                    "so2": 1.9,
                    "pm2_5": values["pm2_5"],
                    "pm10": values["pm10"],
                    "nh3": 0.8,
                },
                "dt": hour,
            }
            for hour, values in self.hours(start, end)
            if values is not None
        ]
        return 200, {"coord": coord, "list": items}

    def break_reply(self, kind: str, body: Any) -> Any:
        items = body["list"]
        if kind == "truncated":
            return _truncated(body)
        if kind == "html":
            return _HTML, "text/html; charset=utf-8"
        if kind == "not_json":
            return "Internal error, please try later", "text/plain"
        if kind == "deep":
            return DEEP_JSON, "application/json"
        if kind == "missing_field":
            del items[len(items) // 2]["components"]["pm2_5"]
        elif kind == "wrong_types":
            items[0]["components"]["pm10"] = "12.5"
        elif kind == "negative":
            items[-1]["components"]["pm2_5"] = -3.0
        elif kind == "absurd":
            items[0]["components"]["pm10"] = 99999.0
        elif kind == "nan":
            items[0]["components"]["pm2_5"] = _NAN_MARK
            return _with_nan(body)
        elif kind == "outside_window":
            items[0]["dt"] = items[0]["dt"] - 30 * 24 * HOUR
        elif kind == "non_hourly":
            items[0]["dt"] = items[0]["dt"] + 1800
        return body


# -- Open-Meteo -------------------------------------------------------------------------------


def _iso_hour(hour: int) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H:%M")


def _parse_hour(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC).timestamp())


@dataclass
class FakeOpenMeteo(FakeServer):
    """``GET /v1/air-quality?latitude&longitude&hourly=pm10,pm2_5&start_hour&end_hour`` as
    Open-Meteo answers: every hour asked for, ``null`` where there is no value."""

    path = "/v1/air-quality"

    def answer(self, params: dict[str, str]) -> tuple[int, Any]:
        try:
            lat, lon = float(params["latitude"]), float(params["longitude"])
        except (KeyError, ValueError):
            return 400, {"error": True, "reason": "Parameter 'latitude' and 'longitude' required"}
        if params.get("timezone", "GMT") not in ("GMT", "UTC"):
            return 400, {"error": True, "reason": "this fake only speaks timezone=GMT"}
        try:
            start, end = _parse_hour(params["start_hour"]), _parse_hour(params["end_hour"])
        except (KeyError, ValueError):
            return 400, {
                "error": True,
                "reason": "Parameter 'start_hour' and 'end_hour' must be set as yyyy-mm-ddThh:mm",
            }
        if end < start:
            return 400, {
                "error": True,
                "reason": "End-date must be larger or equals than start-date",
            }
        variables = [v for v in params.get("hourly", "").split(",") if v]
        if not variables:
            return 400, {"error": True, "reason": "Parameter 'hourly' is required"}
        unknown = [v for v in variables if v not in ("pm10", "pm2_5")]
        if unknown:
            return 400, {
                "error": True,
                "reason": f"Cannot initialize AirQualityVariable from invalid String value "
                f"{unknown[0]} for key hourly",
            }
        hours = self.hours(start, end)
        hourly: dict[str, list[Any]] = {"time": [_iso_hour(h) for h, _ in hours]}
        units: dict[str, str] = {"time": "iso8601"}
        for variable in variables:
            hourly[variable] = [None if v is None else v[variable] for _, v in hours]
            units[variable] = "μg/m³"
        return 200, {
            "latitude": round(lat, 1),
            "longitude": round(lon, 1),
            "generationtime_ms": 0.8,
            "utc_offset_seconds": 0,
            "timezone": "GMT",
            "timezone_abbreviation": "GMT",
            "elevation": 23.0,
            "hourly_units": units,
            "hourly": hourly,
        }

    def break_reply(self, kind: str, body: Any) -> Any:
        hourly = body["hourly"]
        if kind == "truncated":
            return _truncated(body)
        if kind == "html":
            return _HTML, "text/html; charset=utf-8"
        if kind == "not_json":
            return "Internal error, please try later", "text/plain"
        if kind == "deep":
            return DEEP_JSON, "application/json"
        if kind == "missing_field":
            del hourly["pm2_5"]
        elif kind == "wrong_types":
            hourly["pm10"][0] = "12.5"
        elif kind == "negative":
            hourly["pm2_5"][-1] = -3.0
        elif kind == "absurd":
            hourly["pm10"][0] = 99999.0
        elif kind == "nan":
            hourly["pm2_5"][0] = _NAN_MARK
            return _with_nan(body)
        elif kind == "outside_window":
            hourly["time"][0] = _iso_hour(_parse_hour(hourly["time"][0]) - 30 * 24 * HOUR)
        elif kind == "non_hourly":
            hourly["time"][0] = hourly["time"][0][:-2] + "30"
        return body


# -- fixtures ---------------------------------------------------------------------------------


_ServerT = TypeVar("_ServerT", bound=FakeServer)


def _running(server: _ServerT) -> Iterator[_ServerT]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openweathermap_server() -> Iterator[FakeOpenWeatherMap]:
    """A fake OpenWeatherMap on 127.0.0.1 (``.url``, ``.api_key``), stopped after the test."""
    yield from _running(FakeOpenWeatherMap())


@pytest.fixture
def openmeteo_server() -> Iterator[FakeOpenMeteo]:
    """A fake Open-Meteo air-quality API on 127.0.0.1 (``.url``), stopped after the test."""
    yield from _running(FakeOpenMeteo())


@pytest.fixture
def fake_api_env(openweathermap_server, openmeteo_server, laqn_server) -> dict[str, str]:
    """Environment variables pointing airq_nb at the fakes (for subprocesses and kernels).

    Includes the fake OpenWeatherMap's key, so the default source is OpenWeatherMap; add
    ``AIRQ_NB_SOURCE="open-meteo"`` (or ``"laqn"``) to use another one.
    """
    return {
        "AIRQ_NB_OPENWEATHER_URL": openweathermap_server.url,
        "AIRQ_NB_OPENMETEO_URL": openmeteo_server.url,
        "AIRQ_NB_LAQN_URL": laqn_server.url,
        "OPENWEATHER_API_KEY": openweathermap_server.api_key,
    }
