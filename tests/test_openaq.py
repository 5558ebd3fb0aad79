"""The OpenAQ v3 source against a fake v3 API over real HTTP: formats, the hour convention,
places, limits, errors, provenance, revisions and the key kept secret."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from fake_openaq import OGL, FakeOpenAQ, openaq_location
from fake_sources import default_pm2_5, default_pm10

import airq_nb
from airq_nb.collector._openaq import LOCATIONS_KEY

pytestmark = pytest.mark.backends("sqlite", "postgres")

HOUR = 3600
T0 = 1_700_000_000  # the fake clock's start, 2023-11-14T22:13:20Z
LAST = T0 // HOUR * HOUR
START = LAST - 5 * HOUR
DEL_NORTE = airq_nb.Location.parse("openaq:2178")


def openaq(server: FakeOpenAQ, **options) -> airq_nb.OpenAQSource:
    return airq_nb.OpenAQSource(api_key=server.api_key, base_url=server.url, timeout=5, **options)


def fetch(source, location=DEL_NORTE, start=START, end=LAST):
    return asyncio.run(source.fetch(location, start=start, end=end))


def collect(store, source, location=DEL_NORTE, **options):
    return airq_nb.collect_now(store, source=source, location=location, **options)


# -- the data operation ---------------------------------------------------------------------


def test_one_request_per_sensor_with_the_key_in_a_header(openaq_server):
    readings = fetch(openaq(openaq_server))
    assert openaq_server.location_requests() == ["/v3/locations/2178"]
    # The API filters on the hour's end: (datetime_from, datetime_to] covers START..LAST.
    assert openaq_server.hour_requests() == [
        (3920, "2023-11-14T17:00:00Z", "2023-11-14T23:00:00Z", "1"),
        (3919, "2023-11-14T17:00:00Z", "2023-11-14T23:00:00Z", "1"),
    ]
    request = openaq_server.requests[-1]
    assert request.headers["X-API-Key"] == openaq_server.api_key
    assert openaq_server.api_key not in request.path + json.dumps(request.params)
    assert request.headers["User-Agent"].startswith(f"airq_nb/{airq_nb.__version__} ")
    assert [r.time for r in readings] == list(range(START, LAST + 1, HOUR))
    first = readings[0]
    assert (first.pm2_5, first.pm10) == (default_pm2_5(START), default_pm10(START))
    coverage = {"observedCount": 1, "expectedCount": 1}
    assert first.details == {"coverage": {"pm2_5": coverage, "pm10": coverage}}


def test_an_hour_is_stored_under_its_period_start(openaq_server):
    # period.datetimeFrom 22:00Z, datetimeTo 23:00Z: the mean over 22:00-23:00 is 22:00.
    openaq_server.set_data(LAST, LAST, pm2_5=41.0, pm10=52.0)
    (reading,) = fetch(openaq(openaq_server))
    assert (reading.time, reading.pm2_5, reading.pm10) == (LAST, 41.0, 52.0)
    body = openaq_server.requests[-1]
    assert body.params["datetime_to"] == "2023-11-14T23:00:00Z"


def test_pages_are_followed_until_a_short_one(openaq_server):
    readings = fetch(openaq(openaq_server, page_size=4), start=LAST - 9 * HOUR)
    assert [page for sensor, *_, page in openaq_server.hour_requests() if sensor == 3920] == [
        "1",
        "2",
        "3",
    ]
    assert len(readings) == 10


# -- places ---------------------------------------------------------------------------------


def test_a_named_point_resolves_to_the_nearest_pm_location_once(clocked_store, openaq_server):
    source = openaq(openaq_server)
    london = airq_nb.LONDON
    prepared = asyncio.run(source.prepare(clocked_store, london))
    assert {f: loc.id for f, loc in prepared.picked} == {"pm2_5": 2179, "pm10": 2178}
    assert openaq_server.location_requests() == ["/v3/locations?coordinates=51.5074,-0.1278"]
    assert openaq_server.requests[0].params["radius"] == "25000"
    cached = clocked_store.get((*LOCATIONS_KEY, "London")).value
    assert cached["point"] == london.point and set(cached["picked"]) == {"pm2_5", "pm10"}
    asyncio.run(source.prepare(clocked_store, london))
    assert len(openaq_server.location_requests()) == 1  # from the store's KV
    clocked_store.clock.advance(24 * HOUR + 1)
    openaq_server.fail(503)
    again = asyncio.run(source.prepare(clocked_store, london))  # stale, refresh fails: kept
    assert again.picked == prepared.picked


def test_one_location_with_both_serves_both_when_it_is_nearest(clocked_store, openaq_server):
    near_marylebone = airq_nb.Location("Marylebone", 51.5226, -0.1546)
    prepared = asyncio.run(openaq(openaq_server).prepare(clocked_store, near_marylebone))
    assert {f: loc.id for f, loc in prepared.picked} == {"pm2_5": 2178, "pm10": 2178}


def test_a_location_openaq_no_longer_has_is_refused_naming_those_near_it(
    clocked_store, openaq_server
):
    source = openaq(openaq_server)
    collect(clocked_store, source)  # openaq:2178 known, and kept in the store's KV
    openaq_server.locations[:] = [loc for loc in openaq_server.locations if loc["id"] != 2178]
    clocked_store.clock.advance(24 * HOUR + 1)  # the stored answer is looked up again
    with pytest.raises(airq_nb.SourceConfigurationError) as caught:
        collect(clocked_store, source)
    message = str(caught.value)
    assert "HTTP 404" in message and "no longer has openaq:2178 (London Marylebone Road" in message
    assert "nearby locations that measure PM: openaq:2179 (London Bloomsbury" in message
    assert "openaq:159" not in message  # Westminster measures gases only


def test_an_unknown_location_is_refused_saying_what_to_do(clocked_store, openaq_server):
    with pytest.raises(airq_nb.SourceConfigurationError) as caught:
        collect(clocked_store, openaq(openaq_server), airq_nb.Location.parse("openaq:99999"))
    message = str(caught.value)
    assert "no location openaq:99999" in message and "HTTP 404" in message
    assert "'name,latitude,longitude'" in message
    assert airq_nb.read_readings(clocked_store).empty


def test_a_location_without_pm_names_nearby_ones_that_have_it(clocked_store, openaq_server):
    with pytest.raises(airq_nb.SourceConfigurationError) as caught:
        collect(clocked_store, openaq(openaq_server), airq_nb.Location.parse("openaq:159"))
    message = str(caught.value)
    assert "openaq:159 (London Westminster, AURN) measures no PM2.5 or PM10" in message
    assert "nearby locations that measure PM: openaq:2179 (London Bloomsbury" in message
    assert "openaq:2178 (London Marylebone Road" in message


def test_no_pm_within_the_radius_names_the_nearest_and_the_alternative(
    clocked_store, openaq_server
):
    openaq_server.locations = [openaq_location(159, "Westminster", 51.4947, -0.1319, {"no2": 1})]
    with pytest.raises(airq_nb.SourceConfigurationError, match="no OpenAQ location within 25 km"):
        collect(clocked_store, openaq(openaq_server), airq_nb.LONDON)


def test_openaq_ids_are_checked_when_parsed():
    assert airq_nb.Location.parse(" openaq:2178 ") == airq_nb.Location("openaq:2178", None, None)
    assert DEL_NORTE.point == "2178" and DEL_NORTE.openaq_id == 2178
    with pytest.raises(airq_nb.ConfigurationError, match="openaq:<location id>"):
        airq_nb.Location.parse("openaq:KF1")


# -- errors ---------------------------------------------------------------------------------


def test_a_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAQ_API_KEY", raising=False)
    with pytest.raises(airq_nb.SourceConfigurationError, match="set OPENAQ_API_KEY"):
        airq_nb.source_from_env("openaq")
    monkeypatch.setenv("OPENAQ_API_KEY", "abc")
    monkeypatch.setenv("AIRQ_NB_OPENAQ_URL", "http://127.0.0.1:9/v3/")
    source = airq_nb.source_from_env("openaq")
    assert source.base_url == "http://127.0.0.1:9/v3" and "abc" not in repr(source)


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_is_not_retried_and_never_shown(clocked_store, openaq_server, status):
    if status == 401:
        source = airq_nb.OpenAQSource(api_key="wrong-key-0000", base_url=openaq_server.url)
    else:
        openaq_server.fail(403, body={"detail": "key wrong-key-0000 is suspended"})
        source = airq_nb.OpenAQSource(api_key="wrong-key-0000", base_url=openaq_server.url)
    with pytest.raises(airq_nb.InvalidApiKeyError) as caught:
        collect(clocked_store, source)
    assert f"HTTP {status}" in str(caught.value) and "set OPENAQ_API_KEY" in str(caught.value)
    assert "wrong-key-0000" not in str(caught.value)
    assert len(openaq_server.requests) == 1
    assert "wrong-key-0000" not in json.dumps(
        [e.value for e in clocked_store.list(prefix=("airq_nb",))]
    )


def test_retired_v1_and_v2_paths_say_to_use_v3(openaq_server):
    source = airq_nb.OpenAQSource(
        api_key=openaq_server.api_key, base_url=openaq_server.url[:-3] + "/v2"
    )
    with pytest.raises(airq_nb.RequestRejectedError, match=r"HTTP 410.*AIRQ_NB_OPENAQ_URL"):
        fetch(source)


def test_a_429_waits_as_told_then_succeeds(clocked_store, openaq_server):
    source = asyncio.run(openaq(openaq_server).prepare(clocked_store, DEL_NORTE))
    openaq_server.fail(429, retry_after="3", times=1, body={"detail": "Too many requests"})
    result = collect(clocked_store, source)
    assert result.attempts == 2 and result.stored == 168
    assert clocked_store.clock.now() >= T0 + 3


def test_a_429_without_retry_after_waits_for_the_reset(openaq_server):
    openaq_server.fail(429, times=1, body={"detail": "Too many requests"})
    with pytest.raises(airq_nb.RateLimitedError) as caught:
        fetch(openaq(openaq_server))
    assert caught.value.retry_after == openaq_server.reset


def test_no_request_is_sent_once_the_headers_say_none_remain(openaq_server):
    openaq_server.remaining = 0  # the location's reply says none remain for 37 s
    source = openaq(openaq_server)
    with pytest.raises(airq_nb.RateLimitedError, match="rate limit for this key is used up") as e:
        fetch(source, start=LAST)
    assert openaq_server.location_requests() == ["/v3/locations/2178"]
    assert openaq_server.hour_requests() == []
    assert 0 < e.value.retry_after <= openaq_server.reset


@pytest.mark.parametrize("kind", ["html", "truncated", "no_results", "duplicate"])
def test_a_malformed_reply_writes_nothing(clocked_store, openaq_server, kind):
    source = asyncio.run(openaq(openaq_server).prepare(clocked_store, DEL_NORTE))
    openaq_server.malform(kind)
    with pytest.raises(airq_nb.MalformedReplyError, match=r"nothing|HTML|not valid JSON"):
        collect(clocked_store, source)
    assert airq_nb.read_readings(clocked_store).empty


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("string_value", "a string"),
        ("no_period", "has no period"),
        ("half_hour", "not one whole hour"),
    ],
)
def test_a_broken_row_is_left_out_saying_why_and_the_rest_kept(
    clocked_store, openaq_server, caplog, kind, why
):
    source = asyncio.run(openaq(openaq_server).prepare(clocked_store, DEL_NORTE))
    openaq_server.malform(kind, times=1)  # the PM2.5 sensor's page
    with caplog.at_level(logging.WARNING, logger="airq_nb.collector"):
        result = collect(clocked_store, source)
    assert result.stored == 168
    frame = airq_nb.read_readings(clocked_store)
    assert frame["pm2_5"].isna().sum() == 1 and frame["pm10"].notna().all()
    assert any(why in r.getMessage() and "sensor 3920" in r.getMessage() for r in caplog.records)


def test_a_negative_value_is_stored_as_missing(clocked_store, openaq_server, caplog):
    source = asyncio.run(openaq(openaq_server).prepare(clocked_store, DEL_NORTE))
    openaq_server.malform("negative", times=1)
    with caplog.at_level(logging.WARNING, logger="airq_nb.collector"):
        collect(clocked_store, source)
    frame = airq_nb.read_readings(clocked_store)
    assert frame["pm2_5"].isna().sum() == 1
    assert any("stored as missing" in r.getMessage() for r in caplog.records)


# -- what is stored -------------------------------------------------------------------------


def test_readings_carry_the_sites_provider_licence_sensors_and_coverage(
    clocked_store, openaq_server
):
    result = collect(clocked_store, openaq(openaq_server))
    assert (result.source, result.kind, result.stored) == ("openaq", "measured", 168)
    frame = airq_nb.read_readings(clocked_store)
    assert set(frame["source"]) == {"openaq"} and set(frame["kind"]) == {"measured"}
    assert set(frame["point"]) == {"2178"}
    assert set(frame["site_name"]) == {"London Marylebone Road"}
    assert set(frame["latitude"]) == {51.52253} and set(frame["longitude"]) == {-0.15461}
    provenance = frame["provenance"].iloc[-1]
    assert provenance == {
        "openaq_locations": [2178],
        "sensors": {"pm2_5": 3920, "pm10": 3919},
        "provider": "AURN",
        "owner": "Department for Environment, Food & Rural Affairs",
        "licenses": ["Open Government Licence v3.0 (attribution: Defra, UK-AIR)"],
        "timezone": "Europe/London",
        "coverage": {
            "pm2_5": {"observedCount": 1, "expectedCount": 1},
            "pm10": {"observedCount": 1, "expectedCount": 1},
        },
    }


def test_two_locations_behind_one_place_are_both_named(clocked_store, openaq_server):
    collect(clocked_store, openaq(openaq_server), airq_nb.LONDON)
    frame = airq_nb.read_readings(clocked_store)
    assert set(frame["point"]) == {"2179/2178"}
    assert set(frame["site_name"]) == {"London Bloomsbury / London Marylebone Road"}
    assert frame["provenance"].iloc[0]["sensors"] == {"pm2_5": 3930, "pm10": 3919}


def test_daily_means_count_a_locations_days_in_the_zone_openaq_names(clocked_store, openaq_server):
    openaq_server.locations.append(
        openaq_location(
            2000, "Manhattan", 40.7128, -74.006, {"pm25": 77, "pm10": 78},
            timezone="America/New_York", country=(155, "US", "United States"),
        )
    )  # fmt: skip
    manhattan = airq_nb.Location.parse("openaq:2000")
    collect(clocked_store, openaq(openaq_server), manhattan)
    frame = airq_nb.read_readings(clocked_store, location=manhattan)
    assert frame["provenance"].iloc[-1]["timezone"] == "America/New_York"
    days = airq_nb.daily_means(clocked_store, location=manhattan, mean="calendar")
    assert set(days["tz"]) == {"America/New_York"}
    # New York's midnight is 05:00 UTC in November (EST, UTC-5).
    assert {t.hour for t in days["start"]} == {5}
    # Marylebone (Europe/London in OpenAQ) keeps London days; a chosen tz still wins.
    collect(clocked_store, openaq(openaq_server))
    london = airq_nb.daily_means(clocked_store, location=DEL_NORTE, mean="calendar")
    assert set(london["tz"]) == {"Europe/London"}
    chosen = airq_nb.daily_means(clocked_store, location=manhattan, tz="UTC", mean="calendar")
    assert set(chosen["tz"]) == {"UTC"}


def test_revised_values_in_the_window_are_kept_and_logged(clocked_store, openaq_server):
    source = openaq(openaq_server)
    collect(clocked_store, source)
    openaq_server.set_data(LAST - 2 * HOUR, LAST, pm2_5=99.0, pm10=100.0)
    clocked_store.clock.advance(HOUR)
    result = collect(clocked_store, source)
    assert result.revised >= 2
    revisions = airq_nb.read_revisions(clocked_store, location="openaq:2178")
    assert set(revisions["new"]) >= {99.0, 100.0}


def test_the_key_never_lands_in_the_store_or_the_log(clocked_store, openaq_server, caplog):
    openaq_server.locations.append(
        openaq_location(5, "Far", 10.0, 10.0, {"pm25": 9}, licenses=[OGL])
    )
    with caplog.at_level(logging.DEBUG):
        collect(clocked_store, openaq(openaq_server))
        collect(clocked_store, openaq(openaq_server), airq_nb.LONDON)
        openaq_server.fail(500)
        with pytest.raises(airq_nb.SourceUnavailableError) as caught:
            clocked_store.clock.advance(48 * HOUR)
            collect(clocked_store, openaq(openaq_server), airq_nb.LONDON)
    key = openaq_server.api_key
    assert key not in str(caught.value)
    assert key not in caplog.text
    dumped = json.dumps([[e.key, e.value] for e in clocked_store.list(prefix=("airq_nb",))])
    assert key not in dumped
    frame = airq_nb.read_readings(clocked_store)
    assert key not in frame.to_csv()


def test_the_charts_show_openaqs_attribution_and_each_providers_licence(
    clocked_store, openaq_server
):
    import html

    from airq_nb.ui import charts

    collect(clocked_store, openaq(openaq_server))
    live = charts.LiveChart(clocked_store)
    text = live._figure("attribution").text
    assert html.escape(airq_nb.OPENAQ_ATTRIBUTION) in text
    assert "AURN: Open Government Licence v3.0 (attribution: Defra, UK-AIR)" in text
    assert "openaq:2178 – London Marylebone Road · OpenAQ (measured)" in live.as_text()


@pytest.mark.backends("sqlite")
def test_the_cli_collects_openaq_and_never_prints_the_key(db_path, openaq_server):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRQ_NB_", "OPENWEATHER"))}
    env.update(AIRQ_NB_DB=str(db_path), AIRQ_NB_OPENAQ_URL=openaq_server.url)

    def cli(*args: str, key: str | None = openaq_server.api_key):
        run_env = {**env, "OPENAQ_API_KEY": key} if key is not None else env
        return subprocess.run(
            [sys.executable, "-m", "airq_nb", "--source", "openaq", *args],
            env=run_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    done = cli("collect", "--once", "--location", "openaq:2178")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("openaq:2178: stored 168 hours from openaq")
    missing = cli("collect", "--once", key=None)
    assert missing.returncode != 0 and "set OPENAQ_API_KEY" in missing.stderr
    wrong = cli("collect", "--once", key="not-my-key-123")
    assert wrong.returncode != 0 and "rejected the API key (HTTP 401" in wrong.stderr
    for output in (done, missing, wrong):
        assert openaq_server.api_key not in output.stdout + output.stderr
        assert "not-my-key-123" not in output.stdout + output.stderr
