"""``airq-nb means``: daily (or rolling 24-hour) means with their data capture, as a table.

Kept apart from :mod:`airq_nb.cli` (which only adds the command): it calls
:func:`airq_nb.daily_means` and prints one line per place, source, pollutant and period.
"""

from __future__ import annotations

import argparse
import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .means import MIN_CAPTURE, daily_means

if TYPE_CHECKING:
    from .store import Store

__all__ = ["add_means_command", "means_rows"]

HEADER = ("LOCATION", "SOURCE", "POLLUTANT", "DAY", "MEAN", "HOURS", "CAPTURE", "VALID")


def add_means_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``means`` to the CLI's subcommands."""
    means = commands.add_parser(
        "means",
        parents=[common],
        help="daily means with their hours and data capture (valid at 75 %%)",
    )
    means.add_argument("--rolling", action="store_true", help="24-hour running means, one per hour")
    means.add_argument(
        "--tz", default=None, help="count days in this zone (default: each place's own)"
    )
    means.add_argument(
        "--since", default=None, help="an ISO time, e.g. 2026-12-01T00:00Z (default: 7 days)"
    )
    means.add_argument(
        "--min-capture", type=float, default=MIN_CAPTURE,
        help=f"per cent of hours a valid mean needs (default {MIN_CAPTURE:g})",
    )  # fmt: skip
    means.add_argument("--pollutant", choices=("pm2_5", "pm10"), default=None)


def means_rows(
    store: Store, args: argparse.Namespace, *, locations: list[str] | None
) -> tuple[list[dict[str, Any]], list[tuple[str, ...]]]:
    """The means ``args`` ask for: as JSON-ready rows, and as the table's cells."""
    frame = daily_means(
        store,
        mean="rolling" if args.rolling else "calendar",
        tz=args.tz,
        since=args.since or timedelta(days=7),
        location=locations or None,
        pollutant=args.pollutant,
        min_capture=args.min_capture,
    )
    records = []
    cells = []
    for row in frame.itertuples(index=False):
        mean = None if math.isnan(row.mean) else round(float(row.mean), 1)
        records.append(
            {
                "location": row.location, "source": row.source, "pollutant": row.pollutant,
                "day": row.day.isoformat(), "start": row.start.isoformat(),
                "end": row.end.isoformat(), "mean": mean,
                "hours_present": int(row.hours_present),
                "hours_expected": int(row.hours_expected),
                "capture": round(float(row.capture), 1), "valid": bool(row.valid),
                "partial": bool(row.partial),
            }
        )  # fmt: skip
        hours = f"{row.hours_present}/{row.hours_expected}"
        when = row.day.isoformat() if not args.rolling else f"{row.end:%Y-%m-%d %H:%M} UTC"
        cells.append(
            (
                row.location, row.source, row.pollutant, when,
                "-" if mean is None else f"{mean:.1f}",
                f"{hours} so far" if row.partial else hours,
                f"{row.capture:.0f} %", "yes" if row.valid else "no",
            )
        )  # fmt: skip
    return records, cells
