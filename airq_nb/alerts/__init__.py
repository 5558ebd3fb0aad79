"""Alerts: tell people when the air is bad or the collector is failing, exactly once per change.

Rules (:class:`AlertRule`) are stored in the store; :func:`evaluate_alerts` moves each
(rule, place) through ok → pending → firing → ok and queues one notification per
transition and channel on ``alerts.send``, in the same commit; the collector's scheduler
evaluates after each collection and every 15 minutes, and sends through Apprise to the
URLs in ``AIRQ_NB_ALERT_<CHANNEL>``. See ``docs/alerts.md``.
"""

from ._api import (
    AlertState,
    alert_history,
    alert_periods,
    alert_rules,
    alert_states,
    delete_alert_rule,
    get_alert_rule,
    set_alert_rule,
)
from ._channels import ENV_PREFIX, alert_channels, channel_urls, check_channel
from ._evaluate import EVALUATE_TOPIC, SEND_BACKOFF, SEND_TOPIC, AlertTransition, evaluate_alerts
from ._rules import DAQI_LEVELS, KINDS, MEANS, POLLUTANTS, AlertRule, QuietHours, parse_quiet_hours
from ._sending import (
    TIMER_EVERY,
    TIMER_SCHEDULE,
    alerts_until_idle,
    install_alerts,
    send_test_notification,
)

__all__ = [
    "DAQI_LEVELS",
    "ENV_PREFIX",
    "EVALUATE_TOPIC",
    "KINDS",
    "MEANS",
    "POLLUTANTS",
    "SEND_BACKOFF",
    "SEND_TOPIC",
    "TIMER_EVERY",
    "TIMER_SCHEDULE",
    "AlertRule",
    "AlertState",
    "AlertTransition",
    "QuietHours",
    "alert_channels",
    "alert_history",
    "alert_periods",
    "alert_rules",
    "alert_states",
    "alerts_until_idle",
    "channel_urls",
    "check_channel",
    "delete_alert_rule",
    "evaluate_alerts",
    "get_alert_rule",
    "install_alerts",
    "parse_quiet_hours",
    "send_test_notification",
    "set_alert_rule",
]
