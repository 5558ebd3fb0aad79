"""airq_nb: London's particulate air pollution, collected hourly from inside a Jupyter kernel.

A KV store and durable queue in one SQLite file (Deno KV's semantics plus the management
Deno lacks), an asyncio scheduler with durable recurring jobs, and an air-quality collector.
Charts and widgets (``airq_nb.ui.charts``, ``airq_nb.ui.widgets``) are imported on demand.
"""

from ._clock import Clock, FakeClock, SystemClock
from ._errors import (
    AirqError,
    CollectionFailedError,
    ConfigurationError,
    InvalidApiKeyError,
    InvalidDelayError,
    InvalidKeyError,
    InvalidScheduleError,
    InvalidValueError,
    MalformedReplyError,
    MessageNotFoundError,
    PayloadTooLargeError,
    Permanent,
    RateLimitedError,
    RequestRejectedError,
    Retry,
    ScheduleNotFoundError,
    SchedulerError,
    SourceConfigurationError,
    SourceError,
    SourceUnavailableError,
    StoreClosedError,
    StoreError,
)
from .collector._job import CollectResult, collect_now, collect_once
from .collector._laqn import LAQN_ATTRIBUTION, SOURCE_ATTRIBUTIONS, LaqnSource
from .collector._schedule import collect_until_idle, start_collector
from .collector._sources import (
    LONDON,
    Location,
    OpenMeteoSource,
    OpenWeatherMapSource,
    Reading,
    Source,
    source_from_env,
)
from .collector._status import CollectorStatus, collector_status, wait_for_readings
from .scheduling.delivery_log import read_delivery_log
from .scheduling.registry import scheduler_for
from .scheduling.runtime import RunSummary, Scheduler
from .scheduling.schedules import ScheduleInfo
from .scheduling.status import Status, store_status
from .store._queue import DEFAULT_BACKOFF_SCHEDULE, DeadLettered, Delivery, Message, QueueCounts
from .store._sqlite import DEFAULT_DB_PATH, AtomicOperation, CommitResult, Entry, Store, open_store
from .store.readings import read_readings, read_revisions

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BACKOFF_SCHEDULE",
    "DEFAULT_DB_PATH",
    "LAQN_ATTRIBUTION",
    "LONDON",
    "SOURCE_ATTRIBUTIONS",
    "AirqError",
    "AtomicOperation",
    "Clock",
    "CollectResult",
    "CollectionFailedError",
    "CollectorStatus",
    "CommitResult",
    "ConfigurationError",
    "DeadLettered",
    "Delivery",
    "Entry",
    "FakeClock",
    "InvalidApiKeyError",
    "InvalidDelayError",
    "InvalidKeyError",
    "InvalidScheduleError",
    "InvalidValueError",
    "LaqnSource",
    "Location",
    "MalformedReplyError",
    "Message",
    "MessageNotFoundError",
    "OpenMeteoSource",
    "OpenWeatherMapSource",
    "PayloadTooLargeError",
    "Permanent",
    "QueueCounts",
    "RateLimitedError",
    "Reading",
    "RequestRejectedError",
    "Retry",
    "RunSummary",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "Scheduler",
    "SchedulerError",
    "Source",
    "SourceConfigurationError",
    "SourceError",
    "SourceUnavailableError",
    "Status",
    "Store",
    "StoreClosedError",
    "StoreError",
    "SystemClock",
    "collect_now",
    "collect_once",
    "collect_until_idle",
    "collector_status",
    "open_store",
    "read_delivery_log",
    "read_readings",
    "read_revisions",
    "scheduler_for",
    "source_from_env",
    "start_collector",
    "store_status",
    "wait_for_readings",
]
