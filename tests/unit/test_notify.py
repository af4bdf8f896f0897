"""Notifications: subscriptions read from annotations, triggers fired once per transition,
delivery retried in the background."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sim import manifest
from test_engine_scenarios import healthy

from herdsman.notify.config import parse
from herdsman.notify.deliver import Deliverer, Message
from herdsman.notify.messages import Fired, fired
from herdsman.notify.notifier import messages
from herdsman.notify.subscriptions import problems, subscriptions

pytestmark = pytest.mark.unit

ARGO = "notifications.argoproj.io/subscribe."


def test_argo_and_herdsman_annotations_are_both_subscriptions() -> None:
    subs = subscriptions(
        {
            f"{ARGO}on-rollout-aborted.hook": "a;b",
            "herdsman.dev/subscribe.on-rollout-completed.hook": "",
            "other": "x",
        }
    )
    assert [(s.trigger, s.service, s.recipients) for s in subs] == [
        ("on-rollout-completed", "hook", ()),
        ("on-rollout-aborted", "hook", ("a", "b")),
    ]


def test_an_unknown_service_or_trigger_is_named_with_its_annotation() -> None:
    found = problems(
        {f"{ARGO}on-rollout-aborted.nope": "", f"{ARGO}on-lunch.hook": ""},
        frozenset({"hook"}),
    )
    assert found == [
        f"metadata.annotations[{ARGO}on-lunch.hook]: unknown trigger 'on-lunch'"
        " (one of on-rollout-completed, on-rollout-aborted, on-rollout-paused,"
        " on-analysis-inconclusive, on-rollout-step-started)",
        f"metadata.annotations[{ARGO}on-rollout-aborted.nope]: unknown notification service"
        " 'nope' (hook)",
    ]
    assert problems({f"{ARGO}on-rollout-aborted.hook": ""}, frozenset({"hook"})) == []


def test_secret_keys_fill_service_urls_and_templates_are_read() -> None:
    services = parse(
        {"service.slack": "slack://$token/#rel", "template.on-rollout-aborted": "{rollout}!"},
        {"token": "T0K"},
    )
    assert services.urls == {"slack": "slack://T0K/#rel"}
    assert services.templates == {"on-rollout-aborted": "{rollout}!"}


def annotated(body: dict[str, Any]) -> dict[str, Any]:
    body["metadata"]["annotations"] = {
        f"{ARGO}{t}.hook": ""
        for t in (
            "on-rollout-completed",
            "on-rollout-aborted",
            "on-rollout-paused",
            "on-rollout-step-started",
        )
    }
    return body


def test_each_transition_fires_its_trigger_exactly_once() -> None:
    sim = healthy(annotated(manifest(steps=[{"setWeight": 20}, {"pause": {}}])))
    mark = len(sim.history)
    sim.set_image("app:v2")
    triggers: list[str] = []
    for _ in range(30):
        before = sim.rollout
        d = sim.reconcile()
        triggers += [f.trigger for f in fired(before, d)]
        sim.settle()
        sim.tick()
    assert triggers.count("on-rollout-step-started") == 2
    assert triggers.count("on-rollout-paused") == 1
    sim.abort()
    before = sim.rollout
    d = sim.reconcile()
    aborted = [f for f in fired(before, d) if f.trigger == "on-rollout-aborted"]
    assert len(aborted) == 1
    assert "aborted by user" in aborted[0].text({})
    services = parse({"service.hook": "json://localhost:1/x"}, {})
    sent = messages(before, d, services)
    assert [m.url for m in sent] == ["json://localhost:1/x"]
    assert len(sim.history) > mark


def test_a_template_says_what_it_is_told_and_a_broken_one_falls_back() -> None:
    event = Fired(
        "on-rollout-aborted", {"rollout": "shop/checkout", "revision": "2", "message": "m"}
    )
    assert event.text({"on-rollout-aborted": "{rollout} r{revision} {nope}"}) == (
        "shop/checkout r2 {nope}"
    )
    assert event.text({"on-rollout-aborted": "{rollout"}) == "shop/checkout revision 2 aborted: m"


def test_delivery_retries_with_backoff_until_the_receiver_answers() -> None:
    calls: list[float] = []

    def send(_m: Message) -> bool:
        calls.append(time.monotonic())
        return len(calls) >= 3

    d = Deliverer(send=send, first_backoff=0.05).start()
    try:
        assert d.submit(Message("json://x", "t", "b", "w"))
        deadline = time.monotonic() + 5
        while d.delivered == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert d.delivered == 1
        assert len(calls) == 3
        assert calls[2] - calls[1] >= calls[1] - calls[0] >= 0.04  # backing off
    finally:
        d.stop()


def test_submit_never_blocks_even_when_the_receiver_hangs() -> None:
    release = threading.Event()
    d = Deliverer(send=lambda _m: release.wait(5), capacity=3).start()
    try:
        started = time.monotonic()
        results = [d.submit(Message("json://x", "t", "b", str(i))) for i in range(10)]
        assert time.monotonic() - started < 0.1
        assert results.count(False) >= 6  # the queue is bounded: the rest are dropped, said so
    finally:
        release.set()
        d.stop()
