"""Alert channels: a name whose Apprise URLs live in ``AIRQ_NB_ALERT_<NAME>``, and sending to it.

The URLs (with their tokens and passwords) are read from the environment at the moment
they are needed and never stored, logged or put in a queue message: a rule and a queued
notification carry only the channel's name. Apprise is imported here, on first use, so
``import airq_nb`` stays light.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from .._errors import AlertChannelError, AlertDeliveryError

__all__ = ["ENV_PREFIX", "alert_channels", "channel_urls", "check_channel", "send_to_channel"]

#: A channel ``team`` is the environment variable ``AIRQ_NB_ALERT_TEAM``.
ENV_PREFIX = "AIRQ_NB_ALERT_"


def _variable(channel: str) -> str:
    return ENV_PREFIX + channel.upper()


def channel_urls(channel: str) -> list[str]:
    """The Apprise URLs of ``channel`` (space-separated in its variable); AlertChannelError if unset."""
    variable = _variable(channel)
    urls = os.environ.get(variable, "").split()
    if not urls:
        raise AlertChannelError(
            f"alert channel {channel!r} has no URLs: set {variable} to one or more Apprise "
            f'URLs separated by spaces (e.g. {variable}="json://hooks.example.org/airq" or '
            f'"mailto://user:pass@smtp.example.org?to=me@example.org") in the environment '
            "of every process that evaluates or sends alerts"
        )
    return urls


def alert_channels() -> list[str]:
    """The channel names set in this process's environment (``AIRQ_NB_ALERT_<NAME>``), sorted.

    Names only, never the URLs: what a notebook panel offers a test button for.
    """
    return sorted(
        name.removeprefix(ENV_PREFIX).lower()
        for name, value in os.environ.items()
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX) and value.strip()
    )


def _apprise() -> Any:
    """The ``apprise`` module, imported on first use."""
    # Apprise's e-mail plugin imports the stdlib's deprecated imghdr (for PGP); that is
    # Apprise's business, not a warning for our users.
    warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)
    import apprise

    return apprise


def _apprise_for(channel: str) -> Any:
    """An ``apprise.Apprise`` holding every URL of ``channel``; AlertChannelError if one is bad."""
    apprise = _apprise()

    notifier = apprise.Apprise()
    for number, url in enumerate(channel_urls(channel), start=1):
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
            raise AlertChannelError(
                f"URL {number} of {_variable(channel)} (scheme {scheme!r}) is not an Apprise "
                "URL Apprise can use; write one such as json://host/path, mailto://... or "
                "slack://... (see https://github.com/caronc/apprise/wiki)"
            )
        notifier.add(plugin)
    return notifier


def check_channel(channel: str) -> None:
    """Refuse a channel whose variable is missing or holds a malformed Apprise URL."""
    _apprise_for(channel)


def send_to_channel(channel: str, *, title: str, body: str, kind: str = "info") -> None:
    """Send one notification to every URL of ``channel``; AlertDeliveryError if any failed.

    ``kind`` is Apprise's notify type: "info", "success", "warning" or "failure". The
    error names the channel and how many URLs failed, never a URL.
    """
    apprise = _apprise()
    notifier = _apprise_for(channel)
    if not notifier.notify(title=title, body=body, notify_type=apprise.NotifyType(kind)):
        raise AlertDeliveryError(
            f"Apprise could not deliver to alert channel {channel!r} ({len(notifier)} URL(s) "
            f"in {_variable(channel)}); check that the service is reachable and the URL's "
            "credentials are right"
        )
