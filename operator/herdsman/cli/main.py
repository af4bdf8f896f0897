"""`kubectl herdsman`: watch, steer and check rollouts.

    kubectl herdsman get [NAME]                  table of rollouts, or one rollout's summary
    kubectl herdsman status NAME [--watch]       steps, traffic, groups, analysis, conditions
    kubectl herdsman analysis RUN [--watch]      every number an AnalysisRun holds
    kubectl herdsman analysis --rollout NAME     the same, for the rollout's latest run
    kubectl herdsman promote NAME [--full]       leave the current step (or all of them)
    kubectl herdsman abort|retry|pause|resume|restart NAME
    kubectl herdsman undo NAME [--to-revision N]
    kubectl herdsman set image NAME CONTAINER=IMAGE...
    kubectl herdsman lint -f FILE                refuse offline what the API server would refuse
    kubectl herdsman plan -f FILE                the step timeline a manifest would follow
    kubectl herdsman dashboard [--allow-actions] the web dashboard, with your kubeconfig
    kubectl herdsman cost [NAME] [-A] [--since 7d]  what releases spent on extra pods
    kubectl herdsman import NAME [--dry-run]     take a live Argo Rollout over in place

Every verb that changes something only records an intent (see `herdsman.cli.actions`); the
operator acts on it at its next reconcile. Failures are one line on stderr and a non-zero exit,
never a traceback: a person reads this output, often in a hurry.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import config
from rich.console import Console, RenderableType
from rich.live import Live

from herdsman.cli import actions, render
from herdsman.cli import analysis as analysing
from herdsman.cli import cost as costing
from herdsman.cli import lint as linting
from herdsman.cli import plan as planning
from herdsman.cli.actions import ActionError
from herdsman.cluster.kube import ROLLOUTS, KubeError, Rest

PROG = "kubectl herdsman"
PIPE_WIDTH = 160


class CliError(Exception):
    """A failure to report as one line; the exit code says what kind."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    args: argparse.Namespace
    out: Console
    err: Console
    _rest: Rest | None = None
    _namespace: str | None = None

    @property
    def rest(self) -> Rest:
        if self._rest is None:
            self._rest, self._namespace = connect(self.args)
        return self._rest

    @property
    def namespace(self) -> str:
        if self._namespace is None:
            _ = self.rest
        assert self._namespace is not None
        return self._namespace

    def now(self) -> datetime:
        return datetime.now(UTC)

    def done(self, message: str) -> None:
        self.out.print(message, highlight=False, soft_wrap=True)


# --- connecting ---------------------------------------------------------------------------------


def connect(args: argparse.Namespace) -> tuple[Rest, str]:
    """A REST client and the namespace: -n, else the kubeconfig context's, else `default`."""
    try:
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig, context=args.context
        )
        contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=args.kubeconfig
        )
    except (config.ConfigException, OSError) as err:
        raise CliError(f"cannot load kubeconfig: {err}") from None
    chosen = active
    if args.context:
        chosen = next((c for c in contexts if c.get("name") == args.context), active)
    namespace = args.namespace or (chosen or {}).get("context", {}).get("namespace") or "default"
    return Rest(api), namespace


# --- commands -------------------------------------------------------------------------------------


def cmd_get(ctx: Context) -> int:
    now = ctx.now()
    if ctx.args.name:
        ctx.out.print(render.summary(actions.get(ctx.rest, ctx.namespace, ctx.args.name), now))
        return 0
    everywhere = ctx.args.all_namespaces
    items = ctx.rest.list(ROLLOUTS.url(None if everywhere else ctx.namespace))
    if not items:
        where = "any namespace" if everywhere else f"namespace {ctx.namespace}"
        ctx.err.print(f"No rollouts found in {where}.", highlight=False)
        return 0
    items.sort(key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"]))
    ctx.out.print(render.rollouts_table(items, now, namespaces=everywhere))
    return 0


def cmd_cost(ctx: Context) -> int:
    try:
        start = costing.since(ctx.args.since, ctx.now())
    except ValueError as err:
        raise CliError(f"--since: {err}", code=2) from None
    if ctx.args.name:
        items = [actions.get(ctx.rest, ctx.namespace, ctx.args.name)]
    else:
        items = ctx.rest.list(ROLLOUTS.url(None if ctx.args.all_namespaces else ctx.namespace))
    items.sort(key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"]))
    ctx.out.print(costing.table([costing.bill(b, start) for b in items], ctx.args.since))
    return 0


def _status_view(ctx: Context) -> RenderableType:
    body = actions.get(ctx.rest, ctx.namespace, ctx.args.name)
    try:
        runs: dict[str, dict[str, Any]] | None = actions.analysis_runs(
            ctx.rest, ctx.namespace, body
        )
    except KubeError:
        # Not allowed to read AnalysisRuns (or a hiccup): the rollout's own view still stands.
        runs = None
    return render.status_view(body, ctx.now(), runs)


def _analysis_view(ctx: Context) -> RenderableType:
    if ctx.args.rollout:
        run = actions.latest_analysis_run(ctx.rest, ctx.namespace, ctx.args.rollout)
    else:
        run = actions.analysis_run(ctx.rest, ctx.namespace, ctx.args.analysis_run)
    return analysing.analysis_view(run, ctx.now())


def _show(ctx: Context, view: Callable[[Context], RenderableType]) -> int:
    if not ctx.args.watch:
        ctx.out.print(view(ctx))
        return 0
    # Short polling rather than a watch: one GET every interval is cheap, survives API server
    # restarts and proxies without reconnect logic, and the view is redrawn at human pace anyway.
    try:
        with Live(view(ctx), console=ctx.out, refresh_per_second=4, transient=False) as live:
            while True:
                time.sleep(ctx.args.interval)
                live.update(view(ctx))
    except KeyboardInterrupt:
        return 0


def cmd_status(ctx: Context) -> int:
    return _show(ctx, _status_view)


def cmd_analysis(ctx: Context) -> int:
    if bool(ctx.args.analysis_run) == bool(ctx.args.rollout):
        raise CliError("name an AnalysisRun, or a rollout with --rollout (not both)", code=2)
    return _show(ctx, _analysis_view)


def _verb(what: Callable[[Rest, str, str], Any], message: str) -> Callable[[Context], int]:
    def run(ctx: Context) -> int:
        what(ctx.rest, ctx.namespace, ctx.args.name)
        ctx.done(message.format(ref=f"{ctx.namespace}/{ctx.args.name}"))
        return 0

    return run


def cmd_promote(ctx: Context) -> int:
    body = actions.promote(ctx.rest, ctx.namespace, ctx.args.name, full=ctx.args.full)
    ref = f"{ctx.namespace}/{ctx.args.name}"
    if ctx.args.full:
        ctx.done(f"rollout {ref}: full promotion requested (every remaining step skipped)")
        return 0
    step = (body.get("status") or {}).get("step")
    ctx.done(f"rollout {ref}: promotion requested" + (f" from step {step}" if step else ""))
    return 0


def cmd_undo(ctx: Context) -> int:
    revision = actions.undo(
        ctx.rest, ctx.namespace, ctx.args.name, to_revision=ctx.args.to_revision
    )
    ctx.done(f"rollout {ctx.namespace}/{ctx.args.name}: rolling back to revision {revision}")
    return 0


def cmd_set_image(ctx: Context) -> int:
    images: dict[str, str] = {}
    for pair in ctx.args.images:
        container, sep, image = pair.partition("=")
        if not sep or not container or not image:
            raise CliError(f"expected CONTAINER=IMAGE, got {pair!r}", code=2)
        images[container] = image
    followed, _ = actions.template_home(ctx.rest, ctx.namespace, ctx.args.name)
    changed = actions.set_images(ctx.rest, ctx.namespace, ctx.args.name, images)
    shown = ", ".join(f"{c}={i}" for c, i in changed.items())
    where = f" in Deployment {ctx.namespace}/{followed}, which it follows" if followed else ""
    ctx.done(f"rollout {ctx.namespace}/{ctx.args.name}: image updated{where} ({shown})")
    return 0


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(), path
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}") from None


def _lint_files(paths: Sequence[str]) -> linting.Report:
    documents: list[linting.Document] = []
    for path in paths:
        text, source = _read(path)
        documents.extend(linting.lint_text(text, source).documents)
    return linting.Report(documents)


def cmd_dashboard(ctx: Context) -> int:
    from herdsman.cli import dashboard

    explicit = ctx.args.namespace  # without -n: every namespace, not the context's default
    return dashboard.run(ctx.rest, ctx.args, ctx.namespace if explicit else None, ctx.done)


def cmd_import(ctx: Context) -> int:
    from herdsman.cli import argo_controller, importing

    try:
        plan = importing.read(ctx.rest, ctx.namespace, ctx.args.name)
        running, unchecked = argo_controller.detect(ctx.rest, ctx.namespace, ctx.now())
        if running and not (ctx.args.force or ctx.args.dry_run):
            raise CliError(
                "an Argo Rollouts controller is running ("
                + "; ".join(running)
                + "): it would recreate the ReplicaSets Herdsman adopts and fight it over the"
                " pods and Services. Stop it first (e.g. kubectl -n argo-rollouts scale"
                " deployment/argo-rollouts --replicas=0) and run import again, or pass --force"
            )
        for line in running:
            ctx.err.print(
                f"WARNING: an Argo Rollouts controller is running: {line}; both controllers"
                " will act on these pods until it is stopped",
                style="bold red",
                highlight=False,
                soft_wrap=True,
            )
        for what in unchecked:
            ctx.err.print(
                f"warning: not allowed to read {what}: make sure no Argo Rollouts controller"
                " is running",
                highlight=False,
                soft_wrap=True,
            )
        if ctx.args.dry_run:
            ctx.done(f"would import argoproj.io Rollout {ctx.namespace}/{ctx.args.name}:")
            for line in importing.describe(plan):
                ctx.done(f"  {line}")
            if running:
                ctx.done("  (refused unless --force: an Argo Rollouts controller is running)")
            return 0
        importing.execute(ctx.rest, plan, ctx.done)
    except importing.ImportRefused as err:
        raise CliError(str(err)) from None
    return 0


def cmd_lint(ctx: Context) -> int:
    report = _lint_files(ctx.args.filename)
    for line in linting.render(report):
        ctx.out.print(line, highlight=False, soft_wrap=True, markup=False)
    return 0 if report.ok else 1


def cmd_plan(ctx: Context) -> int:
    report = _lint_files(ctx.args.filename)
    if not report.ok:
        for line in linting.render(report):
            ctx.out.print(line, highlight=False, soft_wrap=True, markup=False)
        return 1
    rollouts = [d.rollout for d in report.rollouts() if d.rollout is not None]
    if not rollouts:
        raise CliError("no Rollout in the input: nothing to plan")
    for i, rollout in enumerate(rollouts):
        if i:
            ctx.out.print()
        ctx.out.print(planning.render(planning.timeline(rollout)))
    return 0


# --- arguments ------------------------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On sub-commands the defaults are SUPPRESS so a flag given before the command is not
    # overwritten by an absent one after it: `-n shop status x` and `status x -n shop` both work.
    default = None if top else argparse.SUPPRESS
    parser.add_argument("-n", "--namespace", default=default, help="the namespace to act in")
    parser.add_argument("--kubeconfig", default=default, help="path to the kubeconfig file")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Watch, steer and check Herdsman rollouts.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(top, top=True)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[Context], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _global_options(sub, top=False)
        sub.set_defaults(run=run)
        return sub

    get = command("get", cmd_get, "list rollouts, or summarise one")
    get.add_argument("name", nargs="?")
    get.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list rollouts in every namespace"
    )

    status = command("status", cmd_status, "show a rollout's steps, traffic, groups and analysis")
    status.add_argument("name")
    status.add_argument("-w", "--watch", action="store_true", help="redraw as the rollout moves")
    status.add_argument(
        "--interval", type=float, default=2.0, help="seconds between redraws with --watch"
    )

    analysis = command(
        "analysis", cmd_analysis, "show an AnalysisRun: metrics, measurements, judgements, score"
    )
    analysis.add_argument("analysis_run", nargs="?", metavar="RUN", help="the AnalysisRun's name")
    analysis.add_argument(
        "--rollout", metavar="NAME", help="the latest AnalysisRun of this rollout instead"
    )
    analysis.add_argument("-w", "--watch", action="store_true", help="redraw as the run measures")
    analysis.add_argument(
        "--interval", type=float, default=2.0, help="seconds between redraws with --watch"
    )

    cost = command("cost", cmd_cost, "what releases spent on extra pods, per rollout and namespace")
    cost.add_argument("name", nargs="?")
    cost.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    cost.add_argument("--since", default="7d", help="the period: 7d, 24h, 30m (default 7d)")

    promote = command("promote", cmd_promote, "leave the current step")
    promote.add_argument("name")
    promote.add_argument("--full", action="store_true", help="skip every remaining step")

    for name, what, message, help in (
        ("abort", actions.abort, "rollout {ref}: abort requested", "send traffic back to stable"),
        ("retry", actions.retry, "rollout {ref}: retry requested", "retry an aborted rollout"),
        ("pause", actions.pause, "rollout {ref}: paused", "stop the rollout where it is"),
        ("resume", actions.resume, "rollout {ref}: resumed", "continue a paused rollout"),
        ("restart", actions.restart, "rollout {ref}: restart requested", "replace every pod"),
    ):
        command(name, _verb(what, message), help).add_argument("name")

    undo = command("undo", cmd_undo, "go back to an earlier revision")
    undo.add_argument("name")
    undo.add_argument("--to-revision", type=int, default=None, metavar="N")

    set_ = commands.add_parser("set", help="change a rollout's pod template")
    set_things = set_.add_subparsers(dest="what", required=True, metavar="WHAT")
    image = set_things.add_parser("image", help="set container images: CONTAINER=IMAGE")
    _global_options(image, top=False)
    image.set_defaults(run=cmd_set_image)
    image.add_argument("name")
    image.add_argument("images", nargs="+", metavar="CONTAINER=IMAGE")

    from herdsman.cli.dashboard import add_arguments as dashboard_arguments

    dashboard_arguments(
        command("dashboard", cmd_dashboard, "serve the web dashboard here, with your kubeconfig")
    )

    take_over = command("import", cmd_import, "take a live Argo Rollout over in place")
    take_over.add_argument("name", help="the argoproj.io Rollout's name")
    take_over.add_argument(
        "--dry-run", action="store_true", help="print what would be done, change nothing"
    )
    take_over.add_argument(
        "--force",
        action="store_true",
        help="import even while an Argo Rollouts controller runs (warned about loudly)",
    )

    for name, run, help in (
        ("lint", cmd_lint, "validate manifests offline with the CRD's own rules"),
        ("plan", cmd_plan, "show the steps, weights and pods a manifest would go through"),
    ):
        sub = command(name, run, help)
        sub.add_argument(
            "-f",
            "--filename",
            action="append",
            required=True,
            help="a YAML file (multi-document; - for stdin); repeatable",
        )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    ctx = Context(args=args, out=_console(), err=_console(stderr=True))
    try:
        code: int = args.run(ctx)
    except CliError as err:
        return _fail(ctx, str(err), err.code)
    except ActionError as err:
        return _fail(ctx, str(err))
    except KubeError as err:
        return _fail(ctx, _kube_message(ctx, err))
    except (ConnectionError, TimeoutError) as err:
        return _fail(ctx, f"cannot reach the API server: {err}")
    except KeyboardInterrupt:
        return 130
    return code


def _console(*, stderr: bool = False) -> Console:
    # Piped output has no terminal width; rich would assume 80 columns and fold every table.
    stream = sys.stderr if stderr else sys.stdout
    wide = stream.isatty() or bool(os.environ.get("COLUMNS"))
    return Console(stderr=stderr, width=None if wide else PIPE_WIDTH)


def _fail(ctx: Context, message: str, code: int = 1) -> int:
    ctx.err.print(f"error: {message}", style="red", highlight=False, markup=False, soft_wrap=True)
    return code


def _kube_message(ctx: Context, err: KubeError) -> str:
    name = getattr(ctx.args, "name", None)
    if err.not_found and name:
        return f"rollout {ctx.namespace}/{name} not found"
    if err.status in (401, 403):
        return f"not allowed: {err.message or err.reason}"
    return err.message or f"{err.status} {err.reason}"


if __name__ == "__main__":
    sys.exit(main())
