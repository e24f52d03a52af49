"""What a consumer has done: plain counters, mirrored into Prometheus counters.

`ConsumerStats` keeps the numbers as attributes (tests and logs read them); every
increment also bumps the process-wide Prometheus counter with the consumer's label,
so a `/metrics` endpoint on the default registry shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

PROCESSED = Counter(
    "signup_worker_processed",
    "Messages whose side effect succeeded and was recorded.",
    ["consumer"],
)
RETRIED = Counter(
    "signup_worker_retried",
    "Messages sent to a delayed retry queue after a failed side effect.",
    ["consumer"],
)
DEAD_LETTERED = Counter(
    "signup_worker_dead_lettered",
    "Messages parked in the consumer's .dead queue (malformed, refused, retries exhausted).",
    ["consumer"],
)
DUPLICATES_SKIPPED = Counter(
    "signup_worker_duplicates_skipped",
    "Messages acknowledged without a side effect because their event id was already done.",
    ["consumer"],
)

# Read from the broker every DEPTH_EVERY_SECONDS by each running worker (runtime.py):
# what waits in the parking queue (alert when above 0) and in the retry queues.
DEAD_LETTER_DEPTH = Gauge(
    "signup_worker_dead_letter_depth",
    "Messages parked in the consumer's .dead queue now (as the broker counts them).",
    ["consumer"],
)
RETRY_DEPTH = Gauge(
    "signup_worker_retry_depth",
    "Messages waiting in the consumer's retry queues now (as the broker counts them).",
    ["consumer"],
)
DEPTH_EVERY_SECONDS = 15.0


@dataclass
class ConsumerStats:
    consumer: str
    processed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates_skipped: int = 0
    reconnects: int = 0
    _labels: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._labels = {"consumer": self.consumer}

    def count_processed(self) -> None:
        self.processed += 1
        PROCESSED.labels(**self._labels).inc()

    def count_retried(self) -> None:
        self.retried += 1
        RETRIED.labels(**self._labels).inc()

    def count_dead_lettered(self) -> None:
        self.dead_lettered += 1
        DEAD_LETTERED.labels(**self._labels).inc()

    def set_depths(self, dead: int, retrying: int) -> None:
        DEAD_LETTER_DEPTH.labels(**self._labels).set(dead)
        RETRY_DEPTH.labels(**self._labels).set(retrying)

    def count_duplicate(self) -> None:
        self.duplicates_skipped += 1
        DUPLICATES_SKIPPED.labels(**self._labels).inc()
