"""``airq-nb`` / ``python -m airq_nb``: the collector and the queue from a shell, cron or systemd.

A thin skin over the package: it parses options, calls airq_nb, prints the result. Errors
are printed on one line of stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from ._cli_alerts import add_alerts_command, run_alerts_command
from ._errors import AirqError, CollectionFailedError, ConfigurationError
from ._format import one_line, rows_text, run_summary_text, status_rows, store_text, time_text
from ._means_cli import HEADER as _MEANS_HEADER
from ._means_cli import add_means_command, means_rows
from ._version import __version__
from .alerts._sending import alerts_until_idle
from .collector._job import collect_once, default_locations, last_collection
from .collector._schedule import collect_until_idle, install_collector
from .collector._sources import (
    LAQN_PREFIX,
    LONDON,
    OPENAQ_PREFIX,
    SOURCES,
    Location,
    mask_secrets,
    source_from_env,
)
from .store import Store, open_store
from .store.readings import readings_summary

__all__ = ["main"]

PROG = "airq-nb"
#: The zone times are printed in: the machine's own, as a shell user expects.
_TZ = "local"
#: Width of an error cell in the tables (the full text is in --json).
_CELL = 60


EPILOG = """\
environment:
  AIRQ_NB_DB               the store file or postgresql:// URL (overridden by --db)
  AIRQ_NB_SOURCE           openweathermap | open-meteo | laqn | openaq (overridden by --source)
  OPENWEATHER_API_KEY      OpenWeatherMap key; never printed, logged or stored
  OPENAQ_API_KEY           OpenAQ key (sent as X-API-Key); never printed, logged or stored
  AIRQ_NB_ALERT_<CHANNEL>  an alert channel's Apprise URLs; never printed, logged or stored
  AIRQ_NB_OPENWEATHER_URL  OpenWeatherMap base URL (e.g. a local test server)
  AIRQ_NB_OPENMETEO_URL    Open-Meteo base URL
  AIRQ_NB_LAQN_URL         London Air Quality Network (ERG) API base URL
  AIRQ_NB_OPENAQ_URL       OpenAQ v3 base URL (default https://api.openaq.org/v3)

examples:
  airq-nb collect --once                       # one run; exit 1 with the error on failure
  5 * * * * airq-nb collect --once             # a crontab line: hourly, 5 past
  airq-nb run                                  # a service: hourly until SIGTERM
  airq-nb --source laqn collect --location laqn:KF1 --location laqn:MY7
  airq-nb --source openaq collect --location openaq:2178 --location London
  airq-nb queue purge --state dead --yes
  airq-nb means --location laqn:KF1            # daily means, hours and capture
  airq-nb alerts test team                     # a test notification to $AIRQ_NB_ALERT_TEAM
"""


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS defaults so the options work before or after the command without one
    # position's default overwriting the other's value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="store: a SQLite file or a postgresql:// URL (default: $AIRQ_NB_DB, else "
        "~/.local/share/airq_nb/airq.db)",
    )
    common.add_argument(
        "--source",
        default=argparse.SUPPRESS,
        choices=sorted(SOURCES),
        help="air-quality source (default: $AIRQ_NB_SOURCE, else openweathermap when "
        "$OPENWEATHER_API_KEY is set, else open-meteo)",
    )
    common.add_argument(
        "--location",
        action="append",
        default=argparse.SUPPRESS,
        help="London, an LAQN site such as laqn:KF1, an OpenAQ location such as openaq:2178, "
        "or a name with --lat/--lon; repeat for several (default: London; laqn:KF1 and "
        "laqn:MY7 with --source laqn)",
    )
    common.add_argument("--lat", type=float, default=argparse.SUPPRESS, help="latitude")
    common.add_argument("--lon", type=float, default=argparse.SUPPRESS, help="longitude")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (public so documentation can be generated from it)."""
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Collect London's PM2.5/PM10 hourly into an airq_nb store, and manage "
        "its queue and schedules.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    collect = commands.add_parser(
        "collect", parents=[common], help="fetch the missing hours once and store them"
    )
    collect.add_argument(
        "--once", action="store_true", help="one run, then exit (the default; for cron lines)"
    )

    run = commands.add_parser(
        "run",
        parents=[common],
        help="register the hourly collector schedule and deliver headless",
    )
    run.add_argument(
        "--until-idle",
        action="store_true",
        help="deliver everything due, then exit (otherwise run until interrupted)",
    )
    run.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")

    status = commands.add_parser(
        "status",
        parents=[common],
        help="the collector's own status (last and next run, readings), then the whole store's",
    )
    status.add_argument(
        "--collector", action="store_true", help="only the collector's status, not the store's"
    )
    commands.add_parser("schedules", parents=[common], help="list the recurring schedules")
    add_means_command(commands, common)

    queue = commands.add_parser("queue", parents=[common], help="inspect and manage the queue")
    actions = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="list messages")
    listing.add_argument("--state", choices=("queued", "leased", "dead"))
    listing.add_argument("--topic")
    listing.add_argument("--limit", type=int, default=None)
    delete = actions.add_parser("delete", parents=[common], help="delete one message")
    delete.add_argument("id", type=int)
    purge = actions.add_parser("purge", parents=[common], help="delete many messages")
    purge.add_argument("--state", choices=("queued", "leased", "dead"))
    purge.add_argument("--topic")
    purge.add_argument("--yes", action="store_true", help="really delete (no prompt)")
    pause = actions.add_parser("pause", parents=[common], help="stop delivering a topic (or all)")
    pause.add_argument("topic", nargs="?")
    resume = actions.add_parser("resume", parents=[common], help="deliver a topic (or all) again")
    resume.add_argument("topic", nargs="?")
    redrive = actions.add_parser("redrive", parents=[common], help="re-queue a dead letter")
    redrive.add_argument("id", type=int)
    add_alerts_command(commands, common)
    return parser


# -- helpers ---------------------------------------------------------------------------------


def _locations(args: argparse.Namespace) -> list[Location] | None:
    """The --location options as locations; None when none was given (the source's default)."""
    names = getattr(args, "location", None) or []
    lat, lon = getattr(args, "lat", None), getattr(args, "lon", None)
    if (lat is None) != (lon is None):
        raise ConfigurationError("give both --lat and --lon, or neither")
    if lat is not None:
        if len(names) > 1:
            raise ConfigurationError("--lat and --lon go with one --location, not several")
        return [Location(names[0] if names else f"{lat:.4f},{lon:.4f}", lat, lon)]
    chosen = []
    for name in names:
        if (
            name.strip().lower().startswith((LAQN_PREFIX, OPENAQ_PREFIX))
            or name.strip().lower() == LONDON.name.lower()
        ):
            chosen.append(Location.parse(name))
        else:
            raise ConfigurationError(f"--location {name!r} needs --lat and --lon")
    return chosen or None


def _open(args: argparse.Namespace) -> Store:
    return open_store(getattr(args, "db", None))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "total_seconds"):
        return value.total_seconds()
    return value


def _when(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float | datetime):
        return time_text(value, tz=_TZ, seconds=True)
    return str(value)


def _emit(args: argparse.Namespace, data: Any, lines: Sequence[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(_plain(data), indent=2, default=str))
    else:
        for line in lines:
            print(line)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> list[str]:
    cells = [[str(c) for c in header], *[[("-" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]


# -- commands --------------------------------------------------------------------------------


def _collect(args: argparse.Namespace) -> int:
    source = source_from_env(getattr(args, "source", None))
    locations = _locations(args) or default_locations(source)
    results, lines = [], []
    with _open(args) as store:
        for location in locations:
            result = asyncio.run(collect_once(store, source=source, location=location))
            results.append(result)
            lines.append(_collected(result))
        # Alert rules are evaluated and their notifications sent here too (cron users).
        asyncio.run(alerts_until_idle(store))
    _emit(args, results[0] if len(results) == 1 else results, lines)
    return 0


def _collected(result: Any) -> str:
    if result.up_to_date:
        return (
            f"{result.location}: up to date ({result.source}); newest hour {_when(result.newest)}"
        )
    revised = f", {result.revised} revised" if result.revised else ""
    return (
        f"{result.location}: stored {result.stored} hours from {result.source}{revised} "
        f"({_when(result.start)} to {_when(result.end)}); deleted {result.deleted} old"
    )


def _run(args: argparse.Namespace) -> int:
    locations = _locations(args)
    source = source_from_env(getattr(args, "source", None))
    with _open(args) as store:
        if args.until_idle:
            try:
                summary = asyncio.run(
                    collect_until_idle(
                        store, source=source, locations=locations, timeout=args.timeout
                    )
                )
            except CollectionFailedError as exc:
                _emit_summary(args, exc.summary)
                raise
            _emit_summary(args, summary)
            return 0
        try:
            asyncio.run(_serve(store, source, locations, args.timeout))
        except KeyboardInterrupt:
            return 130
    return 0


def _emit_summary(args: argparse.Namespace, summary: Any) -> None:
    _emit(args, summary, [run_summary_text(summary, now=time.time(), tz=_TZ)])


async def _serve(
    store: Store, source: Any, locations: list[Location] | None, timeout: float | None
) -> None:
    """Run the collector as a service until SIGTERM/SIGINT (or ``timeout`` seconds)."""
    from .scheduling.runtime import Scheduler

    scheduler = Scheduler(store)
    try:
        for location in locations or default_locations(source):
            install_collector(scheduler, store, source=source, location=location)
        scheduler.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # systemd stops services with SIGTERM: finish or hand back work, then exit 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
        finally:
            await scheduler.stop(grace=5.0)
    finally:
        scheduler.close()


def _status(args: argparse.Namespace) -> int:
    from .collector._status import collector_status
    from .scheduling.status import store_status

    with _open(args) as store:
        where = store_text(store)
        now = store.now()
        collector = collector_status(store)
        runs = last_collection(store)
        status = None if args.collector else store_status(store)
        summary = [] if args.collector else readings_summary(store)
    lines = [
        "collector:",
        rows_text(collector.rows(tz=_TZ), indent="  "),
        *(
            f"  last collection {run['location']} / {run['source']}: {run['outcome']} at "
            f"{_when(run['at'])}" + (f": {one_line(run['error'], 200)}" if run["error"] else "")
            for run in runs
        ),
    ]
    data: dict[str, Any] = {"collector": collector, "collections": runs}
    if status is not None:
        lines += [
            f"store {where}:",
            rows_text(status_rows(status, now=now, tz=_TZ), indent="  "),
            "readings:",
            *(
                f"  {r['location']} / {r['source']}: {r['hours']} hours, "
                f"{_when(r['oldest'])} to {_when(r['newest'])}"
                for r in summary
            ),
            *([] if summary else ["  none yet (run: airq-nb collect --once)"]),
        ]
        data |= {"status": status, "readings": summary}
    _emit(args, data, lines)
    return 0


def _schedules(args: argparse.Namespace) -> int:
    from .scheduling.schedules import list_schedules

    with _open(args) as store:
        schedules = list_schedules(store)
    rows = [
        (
            s.name,
            f"every {s.every}" if s.every is not None else f"cron {s.cron} ({s.tz})",
            s.topic,
            "paused" if s.paused else "active",
            _when(s.next_run_at),
            _when(s.last_run_at),
            s.last_outcome,
            one_line(s.last_error, _CELL) if s.last_error else None,
        )
        for s in schedules
    ]
    header = ("NAME", "WHEN", "TOPIC", "STATE", "NEXT RUN", "LAST RUN", "OUTCOME", "ERROR")
    _emit(args, schedules, _table(rows, header) if rows else ["no schedules"])
    return 0


def _queue(args: argparse.Namespace) -> int:
    with _open(args) as store:
        queue = store.queue
        if args.action == "list":
            messages = queue.list(state=args.state, topic=args.topic, limit=args.limit)
            rows = [
                (
                    m.id,
                    m.topic,
                    m.state + (" (paused)" if m.paused else ""),
                    _when(m.deliver_at),
                    f"{m.attempts}/{m.max_attempts}",
                    m.schedule,
                    one_line(json.dumps(m.value), 40),
                    one_line(m.last_error, _CELL) if m.last_error else None,
                )
                for m in messages
            ]
            header = (
                "ID", "TOPIC", "STATE", "DELIVER AT", "ATTEMPTS", "SCHEDULE", "VALUE", "LAST ERROR"
            )  # fmt: skip
            _emit(args, messages, _table(rows, header) if rows else ["queue is empty"])
        elif args.action == "delete":
            queue.delete(args.id)
            print(f"deleted message {args.id}")
        elif args.action == "purge":
            what = " ".join(
                part
                for part in (
                    f"state={args.state}" if args.state else "",
                    f"topic={args.topic}" if args.topic else "",
                )
                if part
            )
            matching = len(queue.list(state=args.state, topic=args.topic))
            if matching and not args.yes:
                _error(
                    f"purge would delete {matching} message(s){' with ' + what if what else ''}; "
                    "add --yes to do it"
                )
                return 1
            print(f"purged {queue.purge(state=args.state, topic=args.topic)} message(s)")
        elif args.action == "pause":
            queue.pause(args.topic)
            print(f"paused {args.topic or 'all topics'}")
        elif args.action == "resume":
            queue.resume(args.topic)
            print(f"resumed {args.topic or 'all topics'}")
        elif args.action == "redrive":
            queue.redrive(args.id)
            print(f"re-queued message {args.id}")
    return 0


def _means(args: argparse.Namespace) -> int:
    with _open(args) as store:
        places = [location.name for location in _locations(args) or []]
        records, cells = means_rows(store, args, locations=places)
    _emit(
        args,
        records,
        _table(cells, _MEANS_HEADER)
        if cells
        else [
            "no readings in this store for that place and time; collect some first (airq-nb collect)"
        ],
    )
    return 0


def _alerts(args: argparse.Namespace) -> int:
    return run_alerts_command(args, open_store=_open, emit=_emit, table=_table, when=_when)


_COMMANDS = {
    "alerts": _alerts,
    "collect": _collect,
    "run": _run,
    "status": _status,
    "schedules": _schedules,
    "queue": _queue,
    "means": _means,
}


def _error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(mask_secrets(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 error, 2 usage)."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except AirqError as exc:
        _error(str(exc))
        return 1
    except OSError as exc:
        _error(f"{exc}")
        return 1
    except Exception as exc:
        # A bug (ours or a third-party source's): cron mails and logs want one line, a
        # developer wants the traceback, so AIRQ_NB_DEBUG=1 shows it above that line.
        if os.environ.get("AIRQ_NB_DEBUG", "").strip() not in ("", "0"):
            traceback.print_exc()
            hint = ""
        else:
            hint = "; set AIRQ_NB_DEBUG=1 to see the traceback"
        _error(f"unexpected {type(exc).__name__}: {exc}{hint}")
        return 1
