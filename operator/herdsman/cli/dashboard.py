"""`kubectl herdsman dashboard`: the web dashboard, served here with the user's kubeconfig.

It reads with the user's credentials (watches, no polling), so it shows what the user may see;
with `--allow-actions` its promote, abort, retry and undo buttons act as the user too, through
the same code as the plugin's verbs (herdsman.cli.access). It listens on 127.0.0.1 unless told
otherwise: whoever reaches the port acts with the user's kubeconfig.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from herdsman.cluster.kube import Rest


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8082, help="port to serve on (default 8082)")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on")
    p.add_argument(
        "--allow-actions",
        action="store_true",
        help="offer promote/abort/retry/undo, performed with your kubeconfig's credentials",
    )
    p.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace (the default unless -n names one)",
    )


def run(rest: Rest, args: argparse.Namespace, namespace: str | None, say: object) -> int:
    from herdsman.dashboard.server import serve

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    namespaces = [] if args.all_namespaces or not namespace else [namespace]
    where = ", ".join(namespaces) or "all namespaces"
    host = "127.0.0.1" if args.address in ("0.0.0.0", "") else args.address
    print(
        f"Herdsman dashboard on http://{host}:{args.port}/ ({where};"
        f" actions {'on, as you' if args.allow_actions else 'off'}). Ctrl-C stops it.",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                rest.api,
                port=args.port,
                address=args.address,
                namespaces=namespaces,
                actions="kubeconfig" if args.allow_actions else "off",
            )
        )
    return 0
