"""Delivery on a thread of its own, retried with exponential backoff.

A reconcile only puts messages on a queue (never blocks: a full queue drops the message with a
log line). The thread sends each message when it is due; a failed send is put back due after a
backoff (1 s, 2 s, 4 s... up to `attempts` tries), so one receiver that is down delays neither the
rollouts nor the messages to other receivers. Apprise does the speaking: Slack, Teams,
PagerDuty, Opsgenie, email, JSON webhooks and a hundred more, each by its URL scheme.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("herdsman.notify")


@dataclass(frozen=True)
class Message:
    url: str  # an Apprise URL, recipients included
    title: str
    body: str
    what: str  # for log lines: "<ns>/<name> on-rollout-aborted -> releases"


def apprise_send(message: Message) -> bool:
    import apprise  # imported late: only an operator with notifications configured needs it

    sender = apprise.Apprise()
    if not sender.add(message.url):
        log.warning("notification %s: not a usable Apprise URL", message.what)
        return True  # retrying cannot help
    return bool(sender.notify(title=message.title, body=message.body))


@dataclass
class Deliverer:
    send: Callable[[Message], bool] = apprise_send
    attempts: int = 8
    first_backoff: float = 1.0
    max_backoff: float = 60.0
    capacity: int = 1000
    _heap: list[tuple[float, int, int, Message]] = field(default_factory=list)
    _count: itertools.count[int] = field(default_factory=itertools.count)
    _cv: threading.Condition = field(default_factory=threading.Condition)
    _stop: bool = False
    _thread: threading.Thread | None = None
    delivered: int = 0
    failed: int = 0

    def start(self) -> Deliverer:
        self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def submit(self, message: Message) -> bool:
        """Queue `message` now; False (and a log line) when the queue is full."""
        with self._cv:
            if len(self._heap) >= self.capacity:
                log.warning("notification %s dropped: queue full", message.what)
                return False
            heapq.heappush(self._heap, (time.monotonic(), next(self._count), 1, message))
            self._cv.notify()
        return True

    def pending(self) -> int:
        with self._cv:
            return len(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cv.wait(timeout=wait)
                if self._stop:
                    return
                _, _, attempt, message = heapq.heappop(self._heap)
            try:
                ok = self.send(message)
            except Exception as err:  # a library error is one more failed attempt
                log.warning("notification %s: %s", message.what, err)
                ok = False
            if ok:
                self.delivered += 1
                log.info("notification %s delivered (attempt %d)", message.what, attempt)
                continue
            if attempt >= self.attempts:
                self.failed += 1
                log.warning("notification %s given up after %d attempts", message.what, attempt)
                continue
            backoff = min(self.max_backoff, self.first_backoff * 2 ** (attempt - 1))
            log.info(
                "notification %s failed (attempt %d); again in %.0fs",
                message.what,
                attempt,
                backoff,
            )
            with self._cv:
                heapq.heappush(
                    self._heap,
                    (time.monotonic() + backoff, next(self._count), attempt + 1, message),
                )
                self._cv.notify()
