"""Sending notifications from the queue, and putting alerts on a scheduler.

A notification is a queue message on ``alerts.send`` (one per channel), so delivery has
the queue's guarantees: a failed send (Apprise reports failure) is retried on the
message's back-off (:data:`SEND_BACKOFF`) and dead-lettered after the last attempt,
where the queue widget and ``airq-nb queue redrive`` see it. A channel whose variable is
missing or malformed cannot succeed in this process: that message is dead-lettered at
once with the reason. Every attempt is written to the alert history (sent or failed).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .._errors import AlertChannelError, AlertDeliveryError, Permanent, Retry
from ..store import alerts as table
from ..store.alerts import HistoryRow
from ..store.readings import DEFAULT_RETENTION
from ._channels import send_to_channel
from ._evaluate import EVALUATE_TOPIC, SEND_TOPIC, evaluate_alerts
from ._messages import test_message

if TYPE_CHECKING:
    from ..store import Store

__all__ = [
    "TIMER_EVERY",
    "TIMER_SCHEDULE",
    "after_collection",
    "alerts_until_idle",
    "deliver_notification",
    "ensure_timer",
    "install_alerts",
    "send_test_notification",
]

log = logging.getLogger("airq_nb.alerts")

#: The schedule that evaluates the rules without new data (staleness, failures, quiet hours).
TIMER_SCHEDULE = "alerts:evaluate"
#: How often it runs.
TIMER_EVERY = timedelta(minutes=15)


def deliver_notification(store: Store, message: dict[str, Any]) -> None:
    """Send one queued notification to its channel and record the outcome in the history.

    A notification the history says already reached its channel (a redelivery after a
    crash that followed the send) is not sent again.
    """
    rule, place, channel = message["rule"], message["place"], message["channel"]
    key = message["key"]
    if table.sent_before(store, rule=rule, place=place, detail=key, channel=channel):
        return
    now = store.now()
    try:
        send_to_channel(
            channel,
            title=message["title"],
            body=message["body"],
            kind=message.get("notify_type", "info"),
        )
    except AlertChannelError as exc:
        _record(store, now, rule, place, "failed", message, f"{exc}")
        raise Permanent(f"AlertChannelError: {exc}") from None
    except AlertDeliveryError as exc:
        _record(store, now, rule, place, "failed", message, f"{exc}")
        raise Retry(reason=f"AlertDeliveryError: {exc}") from None
    _record(store, now, rule, place, "sent", message, key)


def _record(
    store: Store,
    at: float,
    rule: str,
    place: str,
    event: str,
    message: dict[str, Any],
    detail: str,
) -> None:
    table.record_history(
        store,
        [
            HistoryRow(
                at,
                rule,
                place,
                event,
                message.get("transition"),
                message["channel"],
                None,
                detail if event == "sent" else f"{message.get('kind')}: {detail}",
            )
        ],
    )


def send_test_notification(channel: str, *, store: Store | None = None) -> None:
    """Send a test notification (it says it is a test) to ``channel`` now, not via the queue.

    Raises :class:`~airq_nb.AlertChannelError` if ``AIRQ_NB_ALERT_<CHANNEL>`` is unset or
    malformed, :class:`~airq_nb.AlertDeliveryError` if the service did not take it. With
    ``store`` the outcome is written to the alert history (rule ``"(test)"``).
    """
    from .._clock import SystemClock

    at = store.now() if store is not None else SystemClock().now()
    title, body = test_message(channel, at=at)
    outcome, detail = "test sent", "test notification"
    try:
        send_to_channel(channel.lower(), title=title, body=body, kind="info")
    except (AlertChannelError, AlertDeliveryError) as exc:
        outcome, detail = "test failed", str(exc)
        raise
    finally:
        if store is not None:
            table.record_history(
                store,
                [HistoryRow(at, "(test)", "-", outcome, None, channel.lower(), None, detail)],
            )


_INSTALLED: weakref.WeakSet[Any] = weakref.WeakSet()


def ensure_timer(store: Store) -> None:
    """Register the evaluation timer if any rule exists (idempotent); remove it if none does."""
    from .._errors import ScheduleNotFoundError
    from ..scheduling.schedules import register_schedule, remove_schedule

    if table.has_rules(store):
        register_schedule(
            store,
            TIMER_SCHEDULE,
            now=store.now(),
            every=TIMER_EVERY,
            cron=None,
            tz="UTC",
            topic=EVALUATE_TOPIC,
            message={"reason": "timer"},
            misfire="coalesce",
            max_catch_up=1,
            backoff_schedule=None,
        )
    else:
        with contextlib.suppress(ScheduleNotFoundError):
            remove_schedule(store, TIMER_SCHEDULE)


def after_collection(store: Store, *, retention: timedelta = DEFAULT_RETENTION) -> None:
    """A collection stored new or revised values: evaluate the rules, prune old history.

    A failure here is logged, not raised: the readings are stored, and the timer
    evaluates again within :data:`TIMER_EVERY`.
    """
    try:
        table.prune_history(store, store.now() - retention.total_seconds())
        evaluate_alerts(store)
    except Exception:
        log.exception("evaluating alert rules after a collection failed; the timer retries")


async def alerts_until_idle(store: Store, *, timeout: float | None = 60.0) -> Any:
    """Evaluate the rules and deliver what is due on the alert topics, then return.

    For a one-shot collection without the collector's scheduler (``airq-nb collect
    --once`` from cron): a scheduler with only the alert handlers, so it delivers
    nothing else. Returns its ``RunSummary`` (None when there are no rules).
    """
    from ..scheduling.runtime import Scheduler

    if not table.has_rules(store):
        return None
    evaluate_alerts(store)
    scheduler = Scheduler(store)
    try:
        install_alerts(scheduler, store)
        return await scheduler.run_until_idle(timeout=timeout)
    finally:
        scheduler.close()


def install_alerts(scheduler: Any, store: Store) -> None:
    """Give ``scheduler`` the alert handlers (evaluate, send), once, and the timer if rules exist.

    The collector calls this from :func:`~airq_nb.start_collector` and
    :func:`~airq_nb.collect_until_idle`, so alerts need no code of their own.
    """
    if scheduler not in _INSTALLED:
        _INSTALLED.add(scheduler)

        def send_alert(message: dict[str, Any]) -> None:
            deliver_notification(store, message)

        def evaluate_alert_rules(message: Any) -> None:
            evaluate_alerts(store)

        scheduler.listen_queue(send_alert, topic=SEND_TOPIC)
        scheduler.listen_queue(evaluate_alert_rules, topic=EVALUATE_TOPIC)
    if table.has_rules(store):
        ensure_timer(store)
