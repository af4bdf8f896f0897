"""The dashboard's web server (aiohttp): the page, its JSON, live updates and actions.

    GET  /                                   the page (static/index.html, app.js, app.css)
    GET  /static/plotly.min.js               plotly.js as the plotly package ships it (offline)
    GET  /api/rollouts                       the list
    GET  /api/rollouts/{ns}/{name}           one rollout: steps, groups, weights over time, runs
    GET  /api/runs/{ns}/{name}               an AnalysisRun's canary report, figures included
    GET  /api/stream                         server-sent events: rollout, deleted, run, reset...
    POST /api/rollouts/{ns}/{name}/{action}  promote, abort, retry, undo (when enabled)

Reads come from the watches (herdsman.dashboard.watch) into the Hub: a browser's request never
reaches the API server, and one watch per kind serves every browser. Actions go to the API
server with the user's own credentials (herdsman.cli.access); `actions` is "off" (default),
"kubeconfig" (local `kubectl herdsman dashboard`: the user's kubeconfig) or "token" (served by
the operator: the bearer token the user sends with the action).

A cross-site page must not be able to act with the user's credentials: actions need a JSON body
and the X-Herdsman-Action header (which a form or a simple cross-origin request cannot send
without a CORS preflight, which this server never grants), and a present Origin must be ours.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp_sse import sse_response

from herdsman.cli import access
from herdsman.cli.actions import ActionError
from herdsman.cluster.kube import ANALYSIS_RUNS, EVENTS, ROLLOUTS, KubeError, Rest
from herdsman.dashboard import report, views
from herdsman.dashboard.hub import Hub
from herdsman.dashboard.watch import Watches, inform

log = logging.getLogger("herdsman.dashboard")

# Events the operator writes about Rollouts (herdsman.cluster.apply), and no others.
OPERATOR_EVENTS = "involvedObject.kind=Rollout,reportingComponent=herdsman.dev/operator"
ACTION_HEADER = "X-Herdsman-Action"
MODES = ("off", "kubeconfig", "token")


@dataclass
class Settings:
    actions: str = "off"
    namespaces: list[str] = field(default_factory=list)


HUB = web.AppKey("hub", Hub)
REST = web.AppKey("rest", Rest)
SETTINGS = web.AppKey("settings", Settings)


@functools.cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs()).encode()


def _static(name: str) -> bytes:
    return (resources.files("herdsman.dashboard") / "static" / name).read_bytes()


TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


async def page(request: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    if name == "plotly.min.js":
        body = _plotly_js()
        headers = {"Cache-Control": "public, max-age=86400"}
    elif name in ("app.js", "app.css"):
        body, headers = _static(name), {"Cache-Control": "no-cache"}
    else:
        raise web.HTTPNotFound()
    response = web.Response(
        body=body, content_type=TYPES["." + name.rsplit(".", 1)[-1]], headers=headers
    )
    response.enable_compression()
    return response


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=functools.partial(json.dumps, default=str))


async def config(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return _json({"actions": settings.actions, "namespaces": settings.namespaces})


async def rollout_list(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return _json({"rollouts": hub.rollout_list(), "problems": sorted(hub.problems.values())})


async def rollout_detail(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    ref = (request.match_info["ns"], request.match_info["name"])
    body = hub.rollouts.get(ref)
    if body is None:
        return _json({"error": f"rollout {ref[0]}/{ref[1]} not found"}, 404)
    events = list(hub.events.get(ref, ()))
    return _json(
        {
            "summary": views.summary(body),
            "steps": views.steps(body, events),
            "groups": views.groups(body),
            "conditions": views.conditions(body),
            "events": events[::-1],
            "runs": hub.runs_of(ref),
            "weights": report.weights_figure(hub.history.points(ref)),
        }
    )


async def run_report(request: web.Request) -> web.Response:
    ref = (request.match_info["ns"], request.match_info["name"])
    run = request.app[HUB].runs.get(ref)
    if run is None:
        return _json({"error": f"analysisrun {ref[0]}/{ref[1]} not found"}, 404)
    return _json(report.canary_report(run))


async def stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    queue = hub.subscribe()
    try:
        async with sse_response(request) as events:
            await events.send(
                json.dumps({"problems": sorted(hub.problems.values())}), event="hello"
            )
            while events.is_connected():
                try:
                    kind, data = await asyncio.wait_for(queue.get(), timeout=10)
                except TimeoutError:
                    continue
                await events.send(json.dumps(data, default=str), event=kind)
            return events
    finally:
        hub.unsubscribe(queue)


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


async def act(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    ns, name, action = (request.match_info[k] for k in ("ns", "name", "action"))
    if settings.actions == "off":
        return _json({"error": "actions are off in this dashboard"}, 403)
    if action not in access.ACTIONS:
        return _json({"error": f"unknown action {action!r}"}, 404)
    if request.headers.get(ACTION_HEADER) != "1" or request.content_type != "application/json":
        return _json({"error": f"an action needs a JSON body and the {ACTION_HEADER} header"}, 400)
    if not _same_origin(request):
        return _json({"error": "cross-origin actions are refused"}, 403)
    try:
        options = await request.json()
    except ValueError:
        return _json({"error": "the body is not JSON"}, 400)
    kwargs: dict[str, Any] = {}
    if action == "undo" and isinstance(options, dict) and options.get("toRevision") is not None:
        kwargs["to_revision"] = int(options["toRevision"])
    if action == "promote" and isinstance(options, dict) and options.get("full"):
        kwargs["full"] = True
    rest = request.app[REST]
    if settings.actions == "token":
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _json({"error": "sign in: send your own bearer token with the action"}, 401)
        rest = access.as_user(rest, token.strip())
    try:
        message = await asyncio.to_thread(access.perform, rest, action, ns, name, **kwargs)
    except access.Refused as err:
        return _json({"error": str(err)}, 403)
    except ActionError as err:
        return _json({"error": str(err)}, 409)
    except KubeError as err:
        status = err.status if err.status in (401, 403, 404, 409, 422) else 502
        return _json({"error": err.message or str(err)}, status)
    except (ConnectionError, TimeoutError) as err:
        return _json({"error": f"cannot reach the API server: {err}"}, 502)
    log.info("dashboard action %s on %s/%s: %s", action, ns, name, message)
    return _json({"message": message})


async def healthz(request: web.Request) -> web.Response:
    problems = sorted(request.app[HUB].problems.values())
    return _json({"ok": not problems, "problems": problems}, 200 if not problems else 503)


def application(hub: Hub, rest: Rest, settings: Settings) -> web.Application:
    if settings.actions not in MODES:
        raise ValueError(f"actions must be one of {', '.join(MODES)}")
    app = web.Application()
    app[HUB], app[REST], app[SETTINGS] = hub, rest, settings
    app.router.add_get("/", page)
    app.router.add_get("/static/{file}", static)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/config", config)
    app.router.add_get("/api/rollouts", rollout_list)
    app.router.add_get("/api/rollouts/{ns}/{name}", rollout_detail)
    app.router.add_get("/api/runs/{ns}/{name}", run_report)
    app.router.add_get("/api/stream", stream)
    app.router.add_post("/api/rollouts/{ns}/{name}/{action}", act)
    return app


async def watch_all(watches: Watches, hub: Hub, namespaces: list[str]) -> None:
    """One list-and-watch per kind and namespace, feeding the hub, until cancelled."""
    tasks = []
    scopes: list[str | None] = list(namespaces) or [None]
    for namespace in scopes:
        sinks = hub.sinks(namespace)
        where = namespace or "all namespaces"
        tasks += [
            inform(
                watches,
                ROLLOUTS,
                namespace,
                sinks.rollouts,
                on_state=hub.problem(f"rollouts {where}"),
            ),
            inform(
                watches,
                ANALYSIS_RUNS,
                namespace,
                sinks.runs,
                on_state=hub.problem(f"analysisruns {where}"),
            ),
            inform(
                watches,
                EVENTS,
                namespace,
                sinks.events,
                field_selector=OPERATOR_EVENTS,
                on_state=hub.problem(f"events {where}"),
            ),
        ]
    await asyncio.gather(*tasks)


async def serve(
    api: Any, *, port: int, address: str, namespaces: list[str], actions: str = "off"
) -> None:
    """Serve until cancelled. `api` is a kubernetes ApiClient: whose credentials read."""
    hub = Hub()
    watches = Watches(api.configuration)
    runner = web.AppRunner(
        application(hub, Rest(api), Settings(actions=actions, namespaces=namespaces)),
        access_log=None,
    )
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    log.info("dashboard on http://%s:%d/ (actions: %s)", address, port, actions)
    try:
        await watch_all(watches, hub, namespaces)
    finally:
        await runner.cleanup()
        await watches.close()


def serve_in_thread(
    api: Any, *, port: int, address: str, namespaces: list[str], actions: str = "off"
) -> threading.Thread:
    """The operator's dashboard: its own thread and event loop, so neither a slow browser nor a
    burst of watch events ever delays a reconcile on the operator's loop."""

    def run() -> None:
        try:
            asyncio.run(
                serve(api, port=port, address=address, namespaces=namespaces, actions=actions)
            )
        except Exception:  # the dashboard is a view: its failure must not take the operator down
            log.exception("the dashboard stopped")

    thread = threading.Thread(target=run, name="dashboard", daemon=True)
    thread.start()
    return thread
