"""`herdsman simulate`: run the synthetic service in the foreground until interrupted.

    herdsman simulate -n shop --rollout checkout --port 9101 \\
        --behaviour registry.k8s.io/pause:3.10.1=latency:0.13,errors:0.05

Each `--behaviour IMAGE=KEY:VALUE,...` says how the server groups running IMAGE answer:
`latency` (mean seconds, default 0.1), `jitter` (standard deviation, default 0.02) and `errors`
(share of requests answered 500, default 0). Images not named are healthy. A fragile image
degrades while its group has lost pods: `lost-errors` and `lost-latency` say how it answers then. `--follow replicas`
(the default) splits traffic by available pods, as a Service over every group does; `--follow
status` by the weights in the Rollout's status, as a traffic router does once the operator has
set it. Prometheus scrapes http://ADDRESS:PORT/metrics.
"""

from __future__ import annotations

import argparse
import signal
import threading
from dataclasses import replace
from typing import Any

from herdsman.cluster.kube import Rest, load_config
from herdsman.simulate.traffic import Behaviour, TrafficSimulator, replica_ratio, rollout_weights

KEYS = {"latency": "latency", "jitter": "jitter", "errors": "error_rate"}
# How a fragile image answers while its group has lost pods.
LOST_KEYS = {"lost-latency": "latency", "lost-errors": "error_rate"}


def behaviour(text: str) -> tuple[str, Behaviour]:
    """`IMAGE=latency:0.13,errors:0.05` -> (image, Behaviour); argparse reports a ValueError."""
    image, sep, spec = text.rpartition("=")
    if not sep or not image:
        raise argparse.ArgumentTypeError(f"expected IMAGE=KEY:VALUE,..., got {text!r}")
    fields: dict[str, float] = {}
    lost: dict[str, float] = {}
    for item in filter(None, spec.split(",")):
        key, colon, value = item.partition(":")
        if not colon or key not in {**KEYS, **LOST_KEYS}:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected one of {', '.join(sorted({**KEYS, **LOST_KEYS}))} as KEY:VALUE"
            )
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: {value!r} is not a number") from None
        if number < 0 or (key in ("errors", "lost-errors") and number > 1):
            raise argparse.ArgumentTypeError(f"{item!r}: out of range")
        if key in LOST_KEYS:
            lost[LOST_KEYS[key]] = number
        else:
            fields[KEYS[key]] = number

    def make(values: dict[str, float]) -> Behaviour:
        return Behaviour(
            error_rate=values.get("error_rate", 0.0),
            latency=values.get("latency", 0.1),
            jitter=values.get("jitter", 0.02),
        )

    normal = make(fields)
    if lost:
        return image, replace(normal, degraded=make({**fields, **lost}))
    return image, normal


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", default="default", help="the rollout's namespace")
    p.add_argument("--rollout", required=True, help="the Rollout whose server groups get traffic")
    p.add_argument(
        "--behaviour",
        type=behaviour,
        action="append",
        default=[],
        metavar="IMAGE=KEY:VALUE,...",
        help="how groups running IMAGE answer (latency, jitter, errors); repeatable",
    )
    p.add_argument(
        "--follow",
        choices=["replicas", "status"],
        default="replicas",
        help="split by available pods (a Service) or by the Rollout's status weights (a router)",
    )
    p.add_argument("--rate", type=float, default=160.0, help="requests per second (default 160)")
    p.add_argument("--address", default="127.0.0.1", help="where /metrics listens")
    p.add_argument("--port", type=int, default=9101, help="the /metrics port (0: any free one)")
    p.add_argument("--seed", type=int, default=7, help="random seed (runs are reproducible)")
    p.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or in-cluster")


def run(args: argparse.Namespace) -> int:
    rest = Rest(load_config(args.kubeconfig))
    tick = 0.25
    simulator = TrafficSimulator(
        replica_ratio(rest, args.namespace, args.rollout),
        dict(args.behaviour),
        requests_per_tick=max(1, round(args.rate * tick)),
        tick=tick,
        seed=args.seed,
        weights=rollout_weights(rest, args.namespace, args.rollout)
        if args.follow == "status"
        else None,
        port=args.port,
        address=args.address,
    ).start()
    print(
        f"simulating {args.namespace}/{args.rollout} ({args.follow}): "
        f"metrics on http://{simulator.target}/metrics",
        flush=True,
    )
    stop = threading.Event()

    def stopping(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    stop.wait()
    simulator.stop()
    return 0
