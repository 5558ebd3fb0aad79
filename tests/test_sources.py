"""The sources against fake servers over real HTTP: formats, strict checks, error classes."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fake_sources import (
    DEEP_JSON,
    MALFORMED_KINDS,
    FakeOpenMeteo,
    FakeOpenWeatherMap,
    default_aqi,
    default_pm2_5,
    default_pm10,
)

import airq_nb
from airq_nb.collector._sources import mask_secrets, parse_retry_after

HOUR = 3600
START = 1_700_000_000 // HOUR * HOUR  # 2023-11-14T22:00Z
END = START + 5 * HOUR


def owm(server: FakeOpenWeatherMap, **options) -> airq_nb.OpenWeatherMapSource:
    return airq_nb.OpenWeatherMapSource(api_key=server.api_key, base_url=server.url, **options)


def fetch(source, start=START, end=END, location=airq_nb.LONDON):
    return asyncio.run(source.fetch(location, start=start, end=end))


# -- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize("coord_style", ["object", "array"])
def test_openweathermap_reads_history_in_either_coord_style(openweathermap_server, coord_style):
    openweathermap_server.coord_style = coord_style
    readings = fetch(owm(openweathermap_server))
    assert [r.time for r in readings] == list(range(START, END + 1, HOUR))
    assert readings[0] == airq_nb.Reading(
        START, default_pm2_5(START), default_pm10(START), default_aqi(START)
    )
    (request,) = openweathermap_server.requests
    assert request.path == "/data/2.5/air_pollution/history"
    assert request.params["start"] == str(START) and request.params["end"] == str(END)
    assert float(request.params["lat"]) == airq_nb.LONDON.latitude
    assert float(request.params["lon"]) == airq_nb.LONDON.longitude


def test_openmeteo_asks_for_gmt_hours_and_reads_parallel_arrays(openmeteo_server):
    readings = fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))
    assert [r.time for r in readings] == list(range(START, END + 1, HOUR))
    assert readings[-1] == airq_nb.Reading(END, default_pm2_5(END), default_pm10(END), None)
    params = openmeteo_server.requests[0].params
    assert params["start_hour"] == "2023-11-14T22:00"
    assert params["end_hour"] == "2023-11-15T03:00"
    assert params["timezone"] == "GMT"
    assert set(params["hourly"].split(",")) == {"pm10", "pm2_5"}


def test_openmeteo_nulls_skip_the_hour_or_the_value(openmeteo_server):
    openmeteo_server.set_data(START, START + HOUR, pm2_5=None, pm10=None)
    openmeteo_server.set_data(START + 2 * HOUR, START + 2 * HOUR, pm2_5=None, pm10=30.0)
    openmeteo_server.set_data(START + 3 * HOUR, START + 3 * HOUR, pm2_5=12.5, pm10=22.0)
    readings = fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))
    # Hours with no value at all are not readings; hours 4 and 5 were never set (null too).
    assert readings == [
        airq_nb.Reading(START + 2 * HOUR, None, 30.0),
        airq_nb.Reading(START + 3 * HOUR, 12.5, 22.0),
    ]


def test_openmeteo_error_reply_is_a_rejected_request(openmeteo_server):
    openmeteo_server.fail(400, body={"error": True, "reason": "Latitude must be in range"})
    with pytest.raises(airq_nb.RequestRejectedError, match="Latitude must be in range") as info:
        fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))
    assert info.value.retryable is False


def test_openmeteo_error_flag_with_status_200_is_rejected_too(openmeteo_server):
    openmeteo_server.fail(200, body={"error": True, "reason": "Cannot initialize variable"})
    with pytest.raises(airq_nb.RequestRejectedError, match="Cannot initialize variable"):
        fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))


# -- malformed replies ----------------------------------------------------------------------

EXPECTED_PROBLEM = {
    "truncated": "not valid JSON",
    "html": "HTML page",
    "not_json": "not valid JSON",
    "wrong_types": "is a string",
    "negative": "negative",
    "absurd": "beyond the plausible",
    "nan": "not valid JSON",
    "outside_window": "outside the window",
    "non_hourly": "not on the hour",
    "missing_field": "has no 'pm2_5' field",
    "deep": "nested too deeply",
}


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
@pytest.mark.parametrize("which", ["openweathermap", "open-meteo"])
def test_each_malformed_reply_is_rejected_with_its_problem_named(kind, which, request):
    server = request.getfixturevalue(
        "openweathermap_server" if which == "openweathermap" else "openmeteo_server"
    )
    server.malform(kind)
    source = (
        owm(server) if which == "openweathermap" else airq_nb.OpenMeteoSource(base_url=server.url)
    )
    with pytest.raises(airq_nb.MalformedReplyError, match=EXPECTED_PROBLEM[kind]):
        fetch(source)


def test_a_deeply_nested_error_body_still_gives_the_status_error(openmeteo_server):
    # The error's detail is read from the body too; nesting there must not escape either.
    openmeteo_server.fail(502, body=DEEP_JSON)
    with pytest.raises(airq_nb.SourceUnavailableError, match="HTTP 502"):
        fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))


def test_a_reply_larger_than_the_cap_is_refused_unread(openmeteo_server):
    source = airq_nb.OpenMeteoSource(base_url=openmeteo_server.url, max_reply_bytes=2000)
    with pytest.raises(airq_nb.MalformedReplyError, match="larger than 2,000 bytes"):
        fetch(source, start=END - 7 * 24 * HOUR)  # a week of hours: ~5 kB
    assert len(fetch(source)) == 6  # six hours fit
    # An error reply over the cap still reports its status, without the unread detail.
    openmeteo_server.fail(503, body={"error": True, "reason": "x" * 5000})
    with pytest.raises(airq_nb.SourceUnavailableError, match=r"HTTP 503 \("):
        fetch(source)
    assert airq_nb.OpenMeteoSource().max_reply_bytes == airq_nb.collector._sources.MAX_REPLY_BYTES


def test_duplicate_hours_are_malformed(openweathermap_server):
    class Duplicating(FakeOpenWeatherMap):
        def answer(self, params):
            status, body = super().answer(params)
            body["list"].append(dict(body["list"][0]))
            return status, body

    server = Duplicating(api_key="k")
    server.start()
    try:
        with pytest.raises(airq_nb.MalformedReplyError, match="appears twice"):
            fetch(owm(server))
    finally:
        server.stop()


def test_aqi_outside_one_to_five_is_malformed(openweathermap_server):
    openweathermap_server.set_data(START, END, aqi=7)
    with pytest.raises(airq_nb.MalformedReplyError, match=r"aqi is 7, expected 1 to 5"):
        fetch(owm(openweathermap_server))


def test_reply_that_is_not_an_object_is_malformed(openmeteo_server):
    openmeteo_server.fail(200, body=[1, 2, 3])
    with pytest.raises(airq_nb.MalformedReplyError, match="is a list, expected an object"):
        fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))


# -- HTTP failures ------------------------------------------------------------------------------


def test_401_is_an_invalid_key_that_says_what_to_do(openweathermap_server):
    source = airq_nb.OpenWeatherMapSource(
        api_key="wrong-key-123456", base_url=openweathermap_server.url
    )
    with pytest.raises(airq_nb.InvalidApiKeyError) as info:
        fetch(source)
    message = str(info.value)
    assert "OPENWEATHER_API_KEY" in message and "hours to activate" in message
    assert "wrong-key-123456" not in message
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), ("0", 0.0), ("soon", None), (None, None)]
)
def test_429_carries_retry_after(openmeteo_server, header, expected):
    openmeteo_server.fail(429, retry_after=header)
    with pytest.raises(airq_nb.RateLimitedError) as info:
        fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))
    assert info.value.retry_after == expected
    assert info.value.retryable is True


def test_retry_after_as_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=120)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert 100 < seconds <= 120
    assert parse_retry_after(format_datetime(when - timedelta(hours=1), usegmt=True)) == 0.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_unavailable(openmeteo_server, status):
    openmeteo_server.fail(status)
    with pytest.raises(airq_nb.SourceUnavailableError, match=f"HTTP {status}"):
        fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))


def test_slow_server_times_out_as_unavailable(openmeteo_server):
    openmeteo_server.delay = 1.0
    source = airq_nb.OpenMeteoSource(base_url=openmeteo_server.url, timeout=0.2)
    with pytest.raises(airq_nb.SourceUnavailableError, match=r"did not answer within 0.2 s"):
        fetch(source)


def test_a_request_given_up_on_does_not_take_the_next_scripted_failure(openmeteo_server):
    server = openmeteo_server
    server.delay = 0.3
    with pytest.raises(airq_nb.SourceUnavailableError, match="did not answer"):
        fetch(airq_nb.OpenMeteoSource(base_url=server.url, timeout=0.05))
    server.wait_requests(1)
    # The first request is still in its delay when this failure is scripted: it is for the
    # next request, not for the one the client already gave up on, even once that one is
    # answered (the flaky-source suite's phases rely on this).
    server.delay = 0.0
    server.fail(503, times=1)
    server.wait_idle(requests=1)
    with pytest.raises(airq_nb.SourceUnavailableError, match="HTTP 503"):
        fetch(airq_nb.OpenMeteoSource(base_url=server.url))
    assert len(server.requests) == 2


def test_connection_dropped_without_a_reply_is_unavailable(openweathermap_server):
    openweathermap_server.drop_connection()
    with pytest.raises(airq_nb.SourceUnavailableError, match="cannot reach OpenWeatherMap") as info:
        fetch(owm(openweathermap_server))
    assert openweathermap_server.api_key not in str(info.value)
    assert "appid=***" in str(info.value)


def test_connection_refused_is_unavailable():
    source = airq_nb.OpenMeteoSource(base_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(airq_nb.SourceUnavailableError, match="cannot reach Open-Meteo"):
        fetch(source)


def test_404_is_a_rejected_request(openweathermap_server):
    source = airq_nb.OpenWeatherMapSource(
        api_key=openweathermap_server.api_key, base_url=openweathermap_server.url + "/wrong"
    )
    with pytest.raises(airq_nb.RequestRejectedError, match="HTTP 404"):
        fetch(source)


# -- the API key never shows ------------------------------------------------------------------


def test_api_key_is_masked_in_errors_logs_and_repr(openweathermap_server, caplog):
    key = openweathermap_server.api_key
    source = owm(openweathermap_server, timeout=0.2)
    assert key not in repr(source)
    caplog.set_level(logging.DEBUG)
    fetch(source)  # a success logs the request URL at INFO (httpx)
    failures = []
    openweathermap_server.delay = 0.5  # time-out: httpx's exception carries the URL
    for _ in range(2):
        with pytest.raises(airq_nb.SourceError) as info:
            fetch(source)
        failures.append(info.value)
        openweathermap_server.delay = 0
        openweathermap_server.fail(503, times=1)
    for exc in failures:
        text = f"{exc!s} {exc!r} {exc.__cause__!r} {exc.__context__!r}"
        assert key not in text
        assert "appid=***" in str(exc)
    assert "appid=***" in caplog.text
    assert key not in caplog.text
    assert openweathermap_server.requests[0].params["appid"] == key  # it was really sent


def test_a_key_echoed_where_the_snippet_is_cut_is_masked_whole(openweathermap_server):
    key = "k9Q2mZ7xW4pL8vR3"
    # The page echoes the key across the snippet's 120-character cut.
    page = "<html><body>" + "a" * 95 + " key " + key + " rejected</body></html>"
    openweathermap_server.fail(200, body=page, content_type="text/html")
    source = airq_nb.OpenWeatherMapSource(api_key=key, base_url=openweathermap_server.url)
    with pytest.raises(airq_nb.MalformedReplyError, match="HTML page") as info:
        fetch(source)
    assert key[:6] not in str(info.value)
    assert " key ***" in str(info.value)


def test_mask_secrets_masks_query_values_and_literal_secrets():
    assert mask_secrets("http://x/y?lat=1&appid=abc123&end=2") == "http://x/y?lat=1&appid=***&end=2"
    assert mask_secrets("key s3cr3t leaked", "s3cr3t") == "key *** leaked"


# -- choosing a source ----------------------------------------------------------------------------


def test_default_source_is_openweathermap_with_a_key_else_open_meteo(monkeypatch):
    for name in ("AIRQ_NB_SOURCE", "OPENWEATHER_API_KEY", "AIRQ_NB_OPENMETEO_URL"):
        monkeypatch.delenv(name, raising=False)
    assert airq_nb.source_from_env().name == "open-meteo"
    monkeypatch.setenv("OPENWEATHER_API_KEY", "abc")
    assert airq_nb.source_from_env().name == "openweathermap"
    monkeypatch.setenv("AIRQ_NB_SOURCE", "open-meteo")
    monkeypatch.setenv("AIRQ_NB_OPENMETEO_URL", "http://127.0.0.1:1234/")
    source = airq_nb.source_from_env()
    assert source.name == "open-meteo" and source.base_url == "http://127.0.0.1:1234"
    assert isinstance(source, airq_nb.Source)


def test_base_url_env_var_reaches_the_fake(monkeypatch, openweathermap_server):
    monkeypatch.setenv("AIRQ_NB_OPENWEATHER_URL", openweathermap_server.url)
    monkeypatch.setenv("OPENWEATHER_API_KEY", openweathermap_server.api_key)
    monkeypatch.delenv("AIRQ_NB_SOURCE", raising=False)
    assert len(fetch(airq_nb.source_from_env())) == 6
    assert len(openweathermap_server.requests) == 1


def test_openweathermap_without_a_key_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("OPENWEATHER_API_KEY", raising=False)
    with pytest.raises(airq_nb.ConfigurationError, match="OPENWEATHER_API_KEY"):
        airq_nb.source_from_env("openweathermap")


def test_unknown_source_is_a_configuration_error():
    with pytest.raises(airq_nb.ConfigurationError, match="openweathermap, open-meteo, laqn"):
        airq_nb.source_from_env("purpleair")


def test_a_third_source_needs_only_name_and_fetch(clocked_store, monkeypatch):
    class Constant:
        name = "constant"

        async def fetch(self, location, *, start, end):
            return [airq_nb.Reading(t, 1.0, 2.0) for t in range(start, end + 1, HOUR)]

    assert isinstance(Constant(), airq_nb.Source)
    result = airq_nb.collect_now(clocked_store, source=Constant())
    assert result.stored == 168
    assert set(airq_nb.read_readings(clocked_store)["source"]) == {"constant"}
    # Registering a factory makes it selectable by name, like the built-in ones.
    monkeypatch.setitem(
        airq_nb.collector._sources.SOURCES, "constant", lambda url, key, timeout: Constant()
    )
    monkeypatch.setenv("AIRQ_NB_SOURCE", "constant")
    assert airq_nb.source_from_env().name == "constant"


def test_location_checks_its_coordinates():
    with pytest.raises(airq_nb.ConfigurationError, match="latitude"):
        airq_nb.Location("Nowhere", 95.0, 0.0)
    with pytest.raises(airq_nb.ConfigurationError, match="name"):
        airq_nb.Location("", 1.0, 0.0)
    place = airq_nb.Location("Paris", 48.85, 2.35)
    assert airq_nb.collector._sources.Location.from_dict(place.as_dict()) == place


def test_fake_openmeteo_validates_like_the_real_api(openmeteo_server):
    # The fake must refuse what the real API refuses, or it would hide our bugs.
    import httpx

    reply = httpx.get(openmeteo_server.url + "/v1/air-quality", params={"latitude": 1})
    assert reply.status_code == 400 and reply.json()["error"] is True
    assert isinstance(openmeteo_server, FakeOpenMeteo)


def test_403_from_a_keyless_source_is_a_refusal_not_a_key_problem(openmeteo_server):
    openmeteo_server.fail(403, body={"error": True, "reason": "blocked"})
    with pytest.raises(airq_nb.RequestRejectedError, match="HTTP 403: blocked") as info:
        fetch(airq_nb.OpenMeteoSource(base_url=openmeteo_server.url))
    assert "OPENWEATHER_API_KEY" not in str(info.value)
