"""The LAQN source against a fake ERG API over real HTTP: formats, quirks, sites, errors."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fake_laqn import LAQN_MALFORMED_KINDS, FakeLaqn, laqn_site
from fake_sources import default_pm2_5, default_pm10

import airq_nb
from airq_nb.collector._laqn import SITES_KEY, parse_site_list, parse_species_reply

HOUR = 3600
DAY = 24 * HOUR
START = 1_700_000_000 // HOUR * HOUR  # 2023-11-14T22:00Z
END = START + 5 * HOUR  # 2023-11-15T03:00Z
KF1 = airq_nb.Location.parse("laqn:KF1")


def laqn(server: FakeLaqn, **options) -> airq_nb.LaqnSource:
    return airq_nb.LaqnSource(base_url=server.url, **options)


def fetch(source, start=START, end=END, location=KF1):
    return asyncio.run(source.fetch(location, start=start, end=end))


def prepare(source, store, location):
    return asyncio.run(source.prepare(store, location))


# -- the data operation ---------------------------------------------------------------------


def test_one_request_per_species_for_whole_gmt_days_with_an_exclusive_end(laqn_server):
    readings = fetch(laqn(laqn_server))
    assert laqn_server.data_requests() == [
        ("KF1", "PM25", "2023-11-14", "2023-11-16"),
        ("KF1", "PM10", "2023-11-14", "2023-11-16"),
    ]
    # The fake answered 48 hours (00:00 on the 14th to 23:00 on the 15th); the window is kept.
    assert [r.time for r in readings] == list(range(START, END + 1, HOUR))
    assert readings[0] == airq_nb.Reading(START, default_pm2_5(START), default_pm10(START))


def test_requests_carry_a_user_agent_naming_airq_nb(laqn_server):
    fetch(laqn(laqn_server))
    agent = laqn_server.requests[0].headers["User-Agent"]
    assert agent.startswith(f"airq_nb/{airq_nb.__version__} ")


def test_the_reply_really_begins_with_a_byte_order_mark_and_is_read_anyway(laqn_server):
    path = "/Data/SiteSpecies/SiteCode=KF1/SpeciesCode=PM25/StartDate=2023-11-14/EndDate=2023-11-15/Json"
    raw = httpx.get(laqn_server.url + path).content
    assert raw.startswith(b"\xef\xbb\xbf{")
    assert len(fetch(laqn(laqn_server))) == 6
    laqn_server.bom = False
    assert len(fetch(laqn(laqn_server))) == 6


def test_an_empty_value_is_missing_never_zero(laqn_server):
    laqn_server.set_data(START - DAY, END + DAY)
    laqn_server.set_data(START + HOUR, START + HOUR, pm2_5=None, pm10=None)
    laqn_server.set_data(START + 2 * HOUR, START + 2 * HOUR, pm2_5=None, pm10=20.0)
    readings = {r.time: r for r in fetch(laqn(laqn_server))}
    # Listed without a value: returned as such (the collector stores no empty new hour).
    assert readings[START + HOUR] == airq_nb.Reading(START + HOUR, None, None)
    assert readings[START + 2 * HOUR] == airq_nb.Reading(START + 2 * HOUR, None, 20.0)


def test_negative_values_are_refused_one_by_one_and_logged(laqn_server, caplog):
    laqn_server.set_data(START - DAY, END + DAY)
    laqn_server.set_data(START, START, pm2_5=-1.7, pm10=12.0)
    with caplog.at_level(logging.WARNING, logger="airq_nb.collector"):
        readings = fetch(laqn(laqn_server))
    assert readings[0] == airq_nb.Reading(START, None, 12.0)
    assert len(readings) == 6
    assert "negative (-1.7" in caplog.text


def test_recorded_reply_shape_and_single_object_quirks():
    from datetime import date

    # Shape recorded from the live API (MY1, NO, 2022-12-10..2022-12-11): values as strings.
    recorded = {
        "RawAQData": {
            "@SiteCode": "MY1",
            "@SpeciesCode": "PM10",
            "Data": [
                {"@MeasurementDateGMT": "2022-12-10 00:00:00", "@Value": "111.4"},
                {"@MeasurementDateGMT": "2022-12-10 01:00:00", "@Value": "77"},
                {"@MeasurementDateGMT": "2022-12-10 02:00:00", "@Value": ""},
            ],
        }
    }
    days = {"site": "MY1", "species": "PM10", "first_day": date(2022, 12, 10)}
    values = parse_species_reply(recorded, **days, end_day=date(2022, 12, 11))
    assert list(values.values()) == [111.4, 77.0, None]
    one_row = recorded["RawAQData"]["Data"][0]
    single = {"RawAQData": {"@SiteCode": "MY1", "@SpeciesCode": "PM10", "Data": one_row}}
    assert parse_species_reply(single, **days, end_day=date(2022, 12, 11)) == {1_670_630_400: 111.4}
    absent = {"RawAQData": {"@SiteCode": "MY1", "@SpeciesCode": "PM10"}}
    assert parse_species_reply(absent, **days, end_day=date(2022, 12, 11)) == {}
    no_value = {"RawAQData": {"Data": {"@MeasurementDateGMT": "2022-12-10 05:00:00"}}}
    assert parse_species_reply(no_value, **days, end_day=date(2022, 12, 11)) == {
        1_670_648_400: None
    }
    # EndDate is exclusive: a row on the end day itself is not one asked for, and is left
    # out rather than failing the reply.
    assert parse_species_reply(recorded, **days, end_day=date(2022, 12, 10)) == {}


EXPECTED_PROBLEM = {
    "truncated": "not valid JSON",
    "html": "HTML page",
    "not_json": "not valid JSON",
    "wrong_types": "expected a number",
    "nan": "finite number",
    "non_hourly": "not on the hour",
    "missing_field": "has no '@MeasurementDateGMT' field",
    "deep": "nested too deeply",
    "wrong_species": "not 'PM25'",
    "no_raw_data": "without a 'RawAQData' object",
}


ONE_BAD_ROW = {
    "absurd": "beyond the plausible",
    "outside_window": "outside the days asked for",
}


@pytest.mark.parametrize("kind", sorted(ONE_BAD_ROW))
def test_one_bad_row_is_refused_alone_and_logged(laqn_server, caplog, kind):
    # One implausible or stray hour must not fail the reply: the run would be asked again
    # for the same hours forever and the site would never move on.
    midnight = START // DAY * DAY  # the first row of the first day asked for
    laqn_server.set_data(midnight - DAY, END + DAY)
    healthy = {r.time: r for r in fetch(laqn(laqn_server), start=midnight)}
    laqn_server.malform(kind)
    with caplog.at_level(logging.WARNING, logger="airq_nb.collector"):
        readings = {r.time: r for r in fetch(laqn(laqn_server), start=midnight)}
    assert ONE_BAD_ROW[kind] in caplog.text
    assert healthy[midnight].pm2_5 is not None
    bad = readings.get(midnight)
    assert bad is None or (bad.pm2_5, bad.pm10) == (None, None)  # that hour only is lost
    assert {t: r for t, r in readings.items() if t != midnight} == {
        t: r for t, r in healthy.items() if t != midnight
    }


@pytest.mark.parametrize("kind", [k for k in LAQN_MALFORMED_KINDS if k not in ONE_BAD_ROW])
def test_each_malformed_reply_is_rejected_with_its_problem_named(laqn_server, kind):
    laqn_server.malform(kind)
    with pytest.raises(airq_nb.MalformedReplyError, match=EXPECTED_PROBLEM[kind]) as info:
        fetch(laqn(laqn_server))
    assert str(info.value).startswith("LAQN sent")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, airq_nb.SourceUnavailableError),
        (503, airq_nb.SourceUnavailableError),
        (404, airq_nb.RequestRejectedError),
        (400, airq_nb.RequestRejectedError),
        (429, airq_nb.RateLimitedError),
    ],
)
def test_http_errors_with_html_pages_are_classified(laqn_server, status, error):
    laqn_server.fail(status, content_type="text/html")
    with pytest.raises(error, match=f"HTTP {status}"):
        fetch(laqn(laqn_server))


def test_time_outs_and_dropped_connections_are_unavailable(laqn_server):
    laqn_server.delay = 0.5
    with pytest.raises(airq_nb.SourceUnavailableError, match=r"did not answer within 0\.1 s"):
        fetch(laqn(laqn_server, timeout=0.1))
    laqn_server.wait_idle(requests=1)
    laqn_server.delay = 0
    laqn_server.drop_connection(times=1)
    with pytest.raises(airq_nb.SourceUnavailableError, match="cannot reach LAQN"):
        fetch(laqn(laqn_server))


def test_a_point_location_is_refused_by_laqn_and_a_site_by_the_models(laqn_server):
    with pytest.raises(airq_nb.SourceConfigurationError, match="laqn:KF1"):
        fetch(laqn(laqn_server), location=airq_nb.LONDON)
    with pytest.raises(airq_nb.SourceConfigurationError, match="no coordinates"):
        fetch(airq_nb.OpenMeteoSource(base_url=laqn_server.url))
    assert laqn_server.requests == []


# -- the site list ---------------------------------------------------------------------------


def test_site_list_quirks_map_metres_lone_species_absent_keys(laqn_server):
    sites = parse_site_list(httpx.get(laqn_server.url + _sites_path()).json())
    kf1 = sites["KF1"]
    # Degrees from @Latitude/@Longitude; the "WGS84" fields hold map metres (6.7 million).
    assert (kf1.latitude, kf1.longitude) == (51.52105, -0.213492)
    assert kf1.pm_species == ("PM25", "PM10") and kf1.open
    assert sites["CT3"].pm_species == ("PM10",)  # "Species" was one object, not a list
    assert sites["ZZ1"].pm_species == () and sites["ZZ1"].latitude is None  # no Species key
    assert not sites["EA1"].open
    assert sites["MY1"].pm_species == () and sites["KC1"].pm_species == ()
    one = {"Sites": {"Site": laqn_site("KF1", "North Ken", 51.5, -0.2, ["PM25"])}}
    assert list(parse_site_list(one)) == ["KF1"]
    finished = laqn_site("BL0", "Bloomsbury", 51.5, -0.1, ["PM10"], finished={"PM10": "2020-01-01"})
    assert parse_site_list({"Sites": {"Site": [finished]}})["BL0"].pm_species == ()


def test_a_recorded_site_entry_reads_degrees_not_map_metres():
    # A MonitoringSiteSpecies entry as recorded from the live API (Merton, ME9).
    recorded = {
        "@DataManager": "King's College London",
        "@DataOwner": "Merton",
        "@DateClosed": "",
        "@DateOpened": "2017-01-27 00:00:00",
        "@Latitude": "51.40162",
        "@LatitudeWGS84": "6692543.79001",
        "@LocalAuthorityCode": "24",
        "@LocalAuthorityName": "Merton",
        "@Longitude": "-0.19589212",
        "@LongitudeWGS84": "-21810.7165116",
        "@SiteCode": "ME9",
        "@SiteLink": "http://www.londonair.org.uk/london/asp/publicdetails.asp?site=ME9",
        "@SiteName": "Merton - Morden Civic Centre 2",
        "@SiteType": "Roadside",
        "Species": {"@SpeciesCode": "NO2", "@DateMeasurementFinished": ""},
    }
    site = parse_site_list({"Sites": {"Site": recorded}})["ME9"]
    assert (site.latitude, site.longitude) == (51.40162, -0.19589212)
    assert site.open and site.pm_species == () and site.name == "Merton - Morden Civic Centre 2"


def _sites_path() -> str:
    return "/Information/MonitoringSiteSpecies/GroupName=London/Json"


@pytest.mark.parametrize(
    ("code", "says", "names"),
    [
        ("MY1", "measures no PM2.5 or PM10 (Marylebone Road's MY1 measures gases only", "MY7"),
        ("KC1", "measures no PM2.5 or PM10 (North Kensington's KC1 measures gases only", "KF1"),
        ("EA1", "is closed", "laqn:KF1"),
        ("ZZ1", "measures no PM2.5 or PM10", "laqn:"),
        ("QQ9", "no LAQN site has the code 'QQ9'", "laqn:KF1"),
    ],
)
def test_unusable_sites_are_refused_naming_sites_that_measure_pm(
    clocked_store, laqn_server, code, says, names
):
    location = airq_nb.Location.parse(f"laqn:{code}")
    with pytest.raises(airq_nb.SourceConfigurationError, match=r"\(") as info:
        prepare(laqn(laqn_server), clocked_store, location)
    message = str(info.value)
    assert says in message and names in message
    assert not info.value.retryable


def test_nearby_sites_are_ordered_by_distance(clocked_store, laqn_server):
    with pytest.raises(airq_nb.SourceConfigurationError) as info:
        prepare(laqn(laqn_server), clocked_store, airq_nb.Location.parse("laqn:MY1"))
    message = str(info.value)
    # The three nearest: MY7 metres from MY1, Bloomsbury ~2 km, North Kensington ~4 km.
    assert message.index("laqn:MY7") < message.index("laqn:BL0") < message.index("laqn:KF1")
    assert "0.0 km" in message and "laqn:CT3" not in message  # the City (~5 km) is fourth
    assert "laqn:EA1" not in message  # closed


def test_a_pm10_only_site_is_fetched_with_one_request(clocked_store, laqn_server):
    source = prepare(laqn(laqn_server), clocked_store, airq_nb.Location.parse("laqn:CT3"))
    assert source.species == ("PM10",)
    readings = fetch(source, location=airq_nb.Location.parse("laqn:CT3"))
    assert [s for _, s, _, _ in laqn_server.data_requests()] == ["PM10"]
    assert all(r.pm2_5 is None and r.pm10 is not None for r in readings)


def test_site_list_is_cached_in_the_store_and_refreshed_daily(
    clocked_store, fake_clock, laqn_server
):
    source = laqn(laqn_server)
    prepare(source, clocked_store, KF1)
    prepare(source, clocked_store, airq_nb.Location.parse("laqn:MY7"))
    assert laqn_server.site_list_requests() == 1
    assert clocked_store.get(SITES_KEY).value["fetched_at"] == fake_clock.now()
    fake_clock.advance(DAY - 60)
    prepare(source, clocked_store, KF1)
    assert laqn_server.site_list_requests() == 1
    fake_clock.advance(120)
    prepare(source, clocked_store, KF1)
    assert laqn_server.site_list_requests() == 2


def test_a_stale_site_list_is_used_when_the_refresh_fails(clocked_store, fake_clock, laqn_server):
    source = laqn(laqn_server)
    prepare(source, clocked_store, KF1)
    fake_clock.advance(2 * DAY)
    laqn_server.fail(503)
    assert prepare(source, clocked_store, KF1).species == ("PM25", "PM10")
    assert laqn_server.site_list_requests() == 2


def test_without_a_stored_list_a_failing_site_list_fails_the_run(clocked_store, laqn_server):
    laqn_server.fail(503)
    with pytest.raises(airq_nb.SourceUnavailableError, match="HTTP 503"):
        prepare(laqn(laqn_server), clocked_store, KF1)


# -- locations -------------------------------------------------------------------------------


def test_location_parse_names_sites():
    assert KF1.name == "laqn:KF1" and KF1.site == "KF1" and KF1.point == "KF1"
    assert airq_nb.Location.parse(" LAQN:my7 ").name == "laqn:MY7"
    assert airq_nb.Location.from_dict(KF1.as_dict()) == KF1
    with pytest.raises(airq_nb.ConfigurationError, match="laqn:<site code>"):
        airq_nb.Location.parse("laqn:../Information")
    with pytest.raises(airq_nb.ConfigurationError, match="latitude"):
        airq_nb.Location("Paris", None, None)


def test_source_from_env_builds_laqn_from_its_url(laqn_server, monkeypatch):
    monkeypatch.setenv("AIRQ_NB_LAQN_URL", laqn_server.url + "/")
    monkeypatch.setenv("AIRQ_NB_SOURCE", "laqn")
    source = airq_nb.source_from_env()
    assert isinstance(source, airq_nb.LaqnSource) and source.base_url == laqn_server.url
    assert (source.name, source.kind) == ("laqn", "measured")
    monkeypatch.delenv("AIRQ_NB_LAQN_URL")
    assert airq_nb.source_from_env().base_url == "https://api.erg.ic.ac.uk/AirQuality"


def test_attribution_names_the_network_and_the_licence():
    assert "London Air Quality Network" in airq_nb.LAQN_ATTRIBUTION
    assert "Imperial College London" in airq_nb.LAQN_ATTRIBUTION
    assert "Open Government Licence" in airq_nb.LAQN_ATTRIBUTION
    assert airq_nb.SOURCE_ATTRIBUTIONS["laqn"] == airq_nb.LAQN_ATTRIBUTION
    assert set(airq_nb.SOURCE_ATTRIBUTIONS) == {"laqn", "open-meteo", "openweathermap", "openaq"}


def test_docs_show_the_attribution_strings_the_code_exports():
    import re
    from pathlib import Path

    docs = Path(__file__).parents[1] / "docs" / "sources.md"
    text = re.sub(r"\s+", " ", docs.read_text())
    for source, attribution in airq_nb.SOURCE_ATTRIBUTIONS.items():
        assert attribution in text, source
