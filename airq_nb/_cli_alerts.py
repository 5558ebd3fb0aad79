"""``airq-nb alerts list | history | test CHANNEL``: the alert rules, their states and history.

Registered by :mod:`airq_nb.cli` (``add_alerts_command``); like the rest of the CLI it only
parses options, calls the package and prints. Channel URLs are never printed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from .alerts import (
    alert_history,
    alert_rules,
    alert_states,
    evaluate_alerts,
    send_test_notification,
)
from .store import Store

__all__ = ["add_alerts_command", "run_alerts_command"]


def add_alerts_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``alerts`` and its actions to the CLI's subcommands."""
    alerts = commands.add_parser("alerts", parents=[common], help="alert rules, states, history")
    actions = alerts.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", parents=[common], help="list the rules with each place's state"
    )
    listing.add_argument(
        "--evaluate", action="store_true", help="evaluate the rules first (queues what is owed)"
    )
    history = actions.add_parser("history", parents=[common], help="transitions and sends")
    history.add_argument("--rule", help="only this rule")
    history.add_argument("--limit", type=int, default=50, help="the newest N rows (default 50)")
    test = actions.add_parser("test", parents=[common], help="send a test notification")
    test.add_argument("channel", help="the channel name: AIRQ_NB_ALERT_<CHANNEL> holds its URLs")


def run_alerts_command(
    args: argparse.Namespace,
    *,
    open_store: Callable[[argparse.Namespace], Store],
    emit: Callable[[argparse.Namespace, Any, Sequence[str]], None],
    table: Callable[[Sequence[Sequence[Any]], Sequence[str]], list[str]],
    when: Callable[[Any], str],
) -> int:
    """Run one ``alerts`` action with the CLI's own helpers for the store and output."""
    with open_store(args) as store:
        if args.action == "list":
            if args.evaluate:
                evaluate_alerts(store)
            rules = alert_rules(store)
            states = {(s.rule, s.place): s for s in alert_states(store)}
            rows = []
            for rule in rules:
                mine = [s for (name, _place), s in sorted(states.items()) if name == rule.name]
                if not mine:
                    rows.append(
                        (rule.name, rule.describe(), "-", "ok", "-", "-", ",".join(rule.notify))
                    )
                for state in mine:
                    rows.append(
                        (
                            rule.name,
                            rule.describe(),
                            state.place,
                            state.state,
                            when(state.since),
                            f"{state.last_notification or '-'} {when(state.last_notified_at)}",
                            ",".join(rule.notify),
                        )
                    )
            header = ("RULE", "WATCHES", "PLACE", "STATE", "SINCE", "LAST NOTIFICATION", "NOTIFY")
            data = {
                "rules": [json.loads(r.to_json()) for r in rules],
                "states": list(states.values()),
            }
            emit(
                args,
                data,
                table(rows, header)
                if rules
                else [
                    "no alert rules; add one with airq_nb.set_alert_rule(store, airq_nb.AlertRule(...)) or in notebooks/alerts.ipynb"
                ],
            )
        elif args.action == "history":
            frame = alert_history(store, rule=args.rule, limit=args.limit)
            records = [
                {k: (None if _missing(v) else v) for k, v in r.items()}
                for r in frame.to_dict("records")
            ]
            rows = [
                (
                    when(r["at"].timestamp()),
                    r["rule"],
                    r["place"],
                    r["event"],
                    r["channel"],
                    None if r["value"] is None else f"{r['value']:g}",
                    r["detail"],
                )
                for r in records
            ]
            header = ("AT", "RULE", "PLACE", "EVENT", "CHANNEL", "VALUE", "DETAIL")
            emit(args, records, table(rows, header) if rows else ["no alert history"])
        elif args.action == "test":
            send_test_notification(args.channel, store=store)
            print(f"sent a test notification to channel {args.channel!r}")
    return 0


def _missing(value: Any) -> bool:
    """None, or pandas' NaN/NaT for a missing cell."""
    return value is None or value != value
