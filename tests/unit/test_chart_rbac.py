"""The chart's RBAC is exactly what the code uses: derived from the code, compared both ways.

What the operator needs comes from three places, each read from the code rather than listed by
hand:
1. every call through `Kube`/`Rest` (receivers named `kube` or `rest`) and the dashboard's
   list-and-watch client (`watches`) in operator/herdsman, except the kubectl plugin and the
   synthetic service (they run with the user's credentials): the verb from the method,
   the resource from the `Path` constant whose `.url(...)` builds the path (followed through
   local assignments and conditional expressions), the subresource from `.url`'s `sub`;
2. the Kopf handlers registered by herdsman.handlers: Kopf lists and watches their resources
   (and patches them when a handler needs a finalizer or stores progress);
3. Kopf's own machinery as the startup handler configures it: peering (list, watch and patch the
   peering objects), scanning (CRDs, and namespaces when limited to namespaces), event posting;
4. the kinds a pass reads by name (`cluster.observe.READS`): listed and watched by
   cluster/reads.py once one of them has been read.

A new API call without its RBAC rule fails `test_..._grants_exactly_what_the_operator_calls`; a
rule nothing uses fails it too; a call whose path cannot be followed statically fails
`test_every_call_names_its_path_statically`. The e2e test test_helm_rbac.py runs the operator
with the chart's ServiceAccount token and records every request the API server answers.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from harness.cluster import CHART, ROOT, helm
from herdsman.cluster.kube import Path as KPath
from herdsman.cluster.observe import READS

pytestmark = pytest.mark.unit

PACKAGE = ROOT / "operator" / "herdsman"
# The kubectl plugin (and the dashboard's actions, which go through it) and `herdsman simulate`
# act with the user's own credentials, never the operator's.
USER_SIDE = {"cli", "simulate"}
# The only module allowed to talk to the API server other than through Kube/Rest.
CLIENT_MODULE = "herdsman.cluster.kube"
RECEIVERS = {"kube", "rest", "watches"}
METHODS = {"get", "list", "create", "patch", "delete", "request", "call", "watch"}
HTTP = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}

Perm = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


@dataclasses.dataclass(frozen=True)
class Call:
    path: KPath
    verb: str
    sub: str | None
    where: str

    @property
    def perm(self) -> Perm:
        resource = self.path.plural + (f"/{self.sub}" if self.sub else "")
        return (self.path.group, resource, self.verb)


class Unresolved(Exception):
    pass


# --- 1. calls through Kube / Rest ---------------------------------------------------------------


def modules(skip: set[str] = USER_SIDE, only: set[str] | None = None) -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        sub = parts[1] if len(parts) > 2 else ""
        if sub in skip or (only is not None and sub not in only):
            continue
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _receiver(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _assignments(fn: ast.AST) -> dict[str, list[ast.expr]]:
    """Names bound in this function's own body (nested functions have their own scope): a loop
    variable is bound to `*iterable` (each element), a parameter to itself."""
    found: dict[str, list[ast.expr]] = {}
    if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
        for arg in _params(fn):
            found[arg] = [ast.Name(id=arg)]
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(node, ast.Assign):
            for target in node.targets:
                # `path, body = await get_first(kube, PATHS, ...)`: each name from the call.
                names = target.elts if isinstance(target, ast.Tuple) else [target]
                for n in names:
                    if isinstance(n, ast.Name):
                        found.setdefault(n.id, []).append(node.value)
        elif (
            isinstance(node, ast.AnnAssign | ast.NamedExpr)
            and node.value is not None
            and isinstance(node.target, ast.Name)
        ):
            found.setdefault(node.target.id, []).append(node.value)
        elif isinstance(node, ast.For | ast.AsyncFor) and isinstance(node.target, ast.Name):
            found.setdefault(node.target.id, []).append(ast.Starred(value=node.iter))
        stack.extend(ast.iter_child_nodes(node))
    return found


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    names = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


@dataclasses.dataclass(frozen=True)
class Generic:
    """A call whose resource arrives through a parameter: resolved at the function's callers.

    `kind` "path": the parameter is a Path (or a list of them) and `url` is the `.url(...)` call
    made on it; "url": the parameter is the path string itself.
    """

    function: str
    param: str
    index: int
    kind: str
    method: str
    http: str | None
    url: ast.Call | None = dataclasses.field(compare=False)
    where: str


class _Param(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


class CallFinder(ast.NodeVisitor):
    def __init__(
        self,
        source: str,
        filename: str,
        constants: dict[str, Any],
        generics: list[Generic] | None = None,
    ) -> None:
        self.filename = filename
        self.constants = constants
        self.known = generics or []
        self.scopes: list[dict[str, list[ast.expr]]] = []
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.calls: list[Call] = []
        self.generics: list[Generic] = []
        self.visit(ast.parse(source, filename))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scopes.append(_assignments(node))
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        for generic in self.known:
            if generic.function == name:
                self._call_site(node, generic)
        if not (isinstance(func, ast.Attribute) and func.attr in METHODS):
            return
        if _receiver(func.value) not in RECEIVERS:
            return
        where = f"{self.filename}:{node.lineno}"
        args = list(node.args)
        method = None
        if func.attr in ("request", "call"):
            if not args or not isinstance(args[0], ast.Constant) or args[0].value not in HTTP:
                raise Unresolved(f"{where}: the HTTP method must be a literal")
            method = str(args.pop(0).value)
        if not args:
            raise Unresolved(f"{where}: {func.attr}() without a path")
        if _discovery(args[0]):
            return  # /apis/<group>/<version>: discovery, open to every authenticated user
        self._record(args[0], func.attr, method, where)

    def _record(self, expr: ast.expr, method: str, http: str | None, where: str) -> None:
        try:
            urls = self._urls(expr, where)
        except _Param as param:
            self._generic(param.name, "url", method, http, None, where)
            return
        for path, url in urls:
            if path is None:  # .url(...) on a Path parameter
                assert isinstance(url.func, ast.Attribute)
                base = url.func.value
                try:
                    self._paths(base, where)
                except _Param as param:
                    self._generic(param.name, "path", method, http, url, where)
                continue
            self.calls.append(_call(path, url, method, http, where))

    def _generic(
        self, param: str, kind: str, method: str, http: str | None, url: ast.Call | None, where: str
    ) -> None:
        fn = self.functions[-1]
        self.generics.append(
            Generic(fn.name, param, _params(fn).index(param), kind, method, http, url, where)
        )

    def _call_site(self, node: ast.Call, generic: Generic) -> None:
        arg: ast.expr | None = None
        if len(node.args) > generic.index:
            arg = node.args[generic.index]
        for kw in node.keywords:
            if kw.arg == generic.param:
                arg = kw.value
        if arg is None:
            return
        where = f"{self.filename}:{node.lineno} -> {generic.where}"
        if generic.kind == "url":
            self._record(arg, generic.method, generic.http, where)
            return
        assert generic.url is not None
        try:
            paths = self._paths(arg, where)
        except _Param as param:
            self._generic(param.name, "path", generic.method, generic.http, generic.url, where)
            return
        for path in paths:
            self.calls.append(_call(path, generic.url, generic.method, generic.http, where))

    def _bound(self, name: str) -> list[ast.expr] | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def _paths(self, expr: ast.expr, where: str) -> list[KPath]:
        """The Path constants an expression can be (a Path, a list of them, or an element).

        A Path a function returns is taken to be one of the Paths passed to it.
        """
        if isinstance(expr, ast.Starred | ast.Subscript | ast.Await):
            return self._paths(expr.value, where)
        if isinstance(expr, ast.Call):
            found: list[KPath] = []
            for arg in [*expr.args, *(k.value for k in expr.keywords)]:
                try:
                    found += self._paths(arg, where)
                except (Unresolved, _Param):
                    continue
            if found:
                return found
        if isinstance(expr, ast.IfExp):
            return self._paths(expr.body, where) + self._paths(expr.orelse, where)
        if isinstance(expr, ast.Name):
            bound = self._bound(expr.id)
            if bound is not None:
                if len(bound) == 1 and isinstance(bound[0], ast.Name) and bound[0].id == expr.id:
                    raise _Param(expr.id)
                return [p for value in bound for p in self._paths(value, where)]
            value = self.constants.get(expr.id)
            if isinstance(value, KPath):
                return [value]
            if isinstance(value, list | tuple) and all(isinstance(v, KPath) for v in value):
                return list(value)
        raise Unresolved(f"{where}: cannot tell which Path `{ast.unparse(expr)}` is")

    def _urls(self, expr: ast.expr, where: str) -> list[tuple[KPath | None, ast.Call]]:
        if (
            isinstance(expr, ast.Call)
            and isinstance(expr.func, ast.Attribute)
            and expr.func.attr == "url"
        ):
            base = expr.func.value
            if isinstance(base, ast.Name) and isinstance(self.constants.get(base.id), KPath):
                return [(self.constants[base.id], expr)]
            try:
                return [(path, expr) for path in self._paths(base, where)]
            except _Param:
                return [(None, expr)]
        if isinstance(expr, ast.IfExp):
            return self._urls(expr.body, where) + self._urls(expr.orelse, where)
        if isinstance(expr, ast.Name):
            bound = self._bound(expr.id)
            if bound is not None:
                if len(bound) == 1 and isinstance(bound[0], ast.Name) and bound[0].id == expr.id:
                    raise _Param(expr.id)
                return [u for value in bound for u in self._urls(value, where)]
        raise Unresolved(
            f"{where}: cannot tell which resource `{ast.unparse(expr)}` names; build the path"
            " with a Path constant's .url(...) in the call or in a local assignment"
        )


def _discovery(expr: ast.expr) -> bool:
    """An f-string or literal for /apis/<group>/<version> (or /api/<version>): no resource."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        text = expr.value
    elif isinstance(expr, ast.JoinedStr):
        text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in expr.values)
    else:
        return False
    parts = text.strip("/").split("/")
    return (parts[0] == "apis" and len(parts) == 3) or (parts[0] == "api" and len(parts) == 2)


def _call(path: KPath, url: ast.Call, method: str, http: str | None, where: str) -> Call:
    name = _arg(url, 1, "name")
    sub = _arg(url, 2, "sub")
    if sub is not None and not isinstance(sub, str):
        raise Unresolved(f"{where}: the subresource must be a literal")
    return Call(path, _verb(method, http, name is not None), sub, where)


def _arg(call: ast.Call, position: int, keyword: str) -> Any:
    """The literal value (or a marker for a non-literal) of one argument of Path.url(...)."""
    node: ast.expr | None = None
    if len(call.args) > position:
        node = call.args[position]
    for kw in call.keywords:
        if kw.arg == keyword:
            node = kw.value
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return None
    return node.value if isinstance(node, ast.Constant) else node


def _verb(method: str, http: str | None, named: bool) -> str:
    if method in ("request", "call"):
        assert http is not None
        verb = HTTP[http]
        if verb == "get" and not named:
            return "list"
        if verb == "delete" and not named:
            return "deletecollection"
        return verb
    if method == "get":
        return "get" if named else "list"
    if method == "delete":
        return "delete" if named else "deletecollection"
    return method


def path_constants(module: Any) -> dict[str, Any]:
    """Module-level Paths, and lists of them (e.g. one kind served at two versions)."""
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if isinstance(value, KPath) or (
            isinstance(value, list | tuple) and value and all(isinstance(v, KPath) for v in value)
        ):
            found[name] = value
    return found


def code_calls(skip: set[str] = USER_SIDE, only: set[str] | None = None) -> list[Call]:
    """Every call, with calls through a Path parameter resolved at the callers (to a fixpoint)."""
    sources = []
    for name, path in modules(skip, only):
        if name == CLIENT_MODULE:
            continue  # Kube and Rest themselves: generic over paths
        module = importlib.import_module(name)
        sources.append((path.read_text(), str(path.relative_to(ROOT)), path_constants(module)))
    generics: list[Generic] = []
    calls: list[Call] = []
    for _ in range(5):
        calls, found = [], []
        for source, rel, constants in sources:
            finder = CallFinder(source, rel, constants, generics)
            calls += finder.calls
            found += finder.generics
        if set(found) <= set(generics):
            return calls
        generics = list(dict.fromkeys([*generics, *found]))
    raise AssertionError("parameter chains deeper than five calls")


def known_paths() -> dict[tuple[str, str], KPath]:
    found = {}
    for name, _ in modules(skip=set()):
        for value in path_constants(importlib.import_module(name)).values():
            for path in value if isinstance(value, list | tuple) else [value]:
                found[(path.group, path.plural)] = path
    return found


# --- 2. Kopf handlers and 3. Kopf's machinery ---------------------------------------------------


def kopf_settings(*, clusterwide: bool, sharded: bool = False) -> kopf.OperatorSettings:
    """The settings as herdsman's startup handler leaves them, for the chart's flags (sharded:
    `--shards` turns peering off, every replica acting on its own shards)."""
    from herdsman import handlers

    settings = kopf.OperatorSettings()
    settings.peering.clusterwide = clusterwide
    memo = kopf.Memo(
        peering={"name": "p", "priority": 0, "standalone": sharded, "mandatory": not sharded}
    )
    asyncio.run(handlers.configure(settings=settings, memo=memo))
    return settings


def kopf_needs(*, clusterwide: bool, sharded: bool = False) -> dict[Perm, str]:
    from herdsman import handlers  # noqa: F401  (registers the handlers)

    registry = kopf.get_default_registry()
    assert not registry._webhooks.get_all_handlers(), "webhooks need admission RBAC in the chart"
    needs: dict[Perm, str] = {}
    paths = known_paths()

    def add(group: str, resource: str, verbs: Iterable[str], why: str) -> None:
        for verb in verbs:
            needs.setdefault((group, resource, verb), why)

    handler_kinds = [
        ("watching", registry._watching.get_all_handlers(), False),
        ("spawning", registry._spawning.get_all_handlers(), False),
        ("indexing", registry._indexing.get_all_handlers(), False),
        # Change handlers store their progress and diff base in annotations: Kopf patches.
        ("changing", registry._changing.get_all_handlers(), True),
    ]
    for kind, handlers_, patches in handler_kinds:
        for h in handlers_:
            selector = h.selector
            plural = selector.plural or selector.any_name
            assert (selector.group or "", plural) in paths, (
                f"Kopf handler {h.id} watches {selector}: add a Path constant for it"
            )
            verbs = ["list", "watch"]
            if patches or getattr(h, "requires_finalizer", False):
                verbs.append("patch")
            add(selector.group or "", plural, verbs, f"kopf {kind} handler {h.id}")

    settings = kopf_settings(clusterwide=clusterwide, sharded=sharded)
    if not settings.peering.standalone:
        plural = "clusterkopfpeerings" if clusterwide else "kopfpeerings"
        add("kopf.dev", plural, ["list", "watch", "patch"], "kopf peering")
    if not settings.scanning.disabled:
        add("apiextensions.k8s.io", "customresourcedefinitions", ["list", "watch"], "kopf scan")
        if not clusterwide:
            add("", "namespaces", ["list", "watch"], "kopf namespace scan")
    if settings.posting.enabled:
        add("", "events", ["create"], "kopf event posting")
    return needs


def operator_needs(*, clusterwide: bool, sharded: bool = False) -> dict[Perm, str]:
    """What the operator calls outside its own namespace (the shard Leases live there, in a
    Role of their own: see `lease_needs`)."""
    needs = {c.perm: c.where for c in code_calls() if c.perm[0] != LEASE_GROUP}
    if not sharded:
        # reconcile.py patches a Rollout only to record its shard label, and only with --shards
        # above 1: an install without sharding must not be able to touch the user's spec.
        assert SHARD_LABEL_PATCH in needs, "the shard label is no longer patched: drop this"
        del needs[SHARD_LABEL_PATCH]
    for perm, why in kopf_needs(clusterwide=clusterwide, sharded=sharded).items():
        needs.setdefault(perm, why)
    for perm, why in reads_needs().items():
        needs.setdefault(perm, why)
    return needs


def reads_needs() -> dict[Perm, str]:
    """The kinds a pass reads by name are watched once read (cluster/reads.py)."""
    return {
        (path.group, path.plural, verb): "cluster/reads.py watches what a pass reads by name"
        for path in READS
        for verb in ("list", "watch")
    }


LEASE_GROUP = "coordination.k8s.io"
SHARD_LABEL_PATCH = ("herdsman.dev", "rollouts", "patch")


def lease_needs() -> dict[Perm, str]:
    """The shard and member Leases (herdsman.sharding), in the operator's own namespace."""
    return {c.perm: c.where for c in code_calls() if c.perm[0] == LEASE_GROUP}


def is_namespaced(group: str, resource: str) -> bool:
    plural = resource.split("/")[0]
    if (group, plural) in {("kopf.dev", "kopfpeerings")}:
        return True
    if (group, plural) in {
        ("kopf.dev", "clusterkopfpeerings"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("", "namespaces"),
    }:
        return False
    path = known_paths().get((group, plural))
    assert path is not None, f"no Path constant for {group}/{plural}"
    return path.namespaced


# --- the chart's side -----------------------------------------------------------------------------

RELEASE = "hd"
FULLNAME = f"{RELEASE}-herdsman"


def render(*values: str) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", "ops"]
    for value in values:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(*args)) if d]


def granted(role: dict[str, Any]) -> set[Perm]:
    perms = set()
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {role['metadata']['name']}: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    perms.add((group, resource, verb))
    return perms


def operator_roles(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == FULLNAME]


def diff(needed: dict[Perm, str], given: set[Perm]) -> str:
    missing = sorted(set(needed) - given)
    unused = sorted(given - set(needed))
    lines = [f"  missing {p}  <- {needed[p]}" for p in missing]
    lines += [f"  unused  {p}  (nothing in the code needs it)" for p in unused]
    return "\n".join(lines)


# --- tests ------------------------------------------------------------------------------------------


def test_every_call_names_its_path_statically() -> None:
    calls = code_calls()
    # The walk really sees the operator's calls (a regression here would hollow the test out).
    perms = {c.perm for c in calls}
    assert ("herdsman.dev", "rollouts/status", "patch") in perms
    assert ("apps", "replicasets", "create") in perms
    assert ("", "secrets", "get") in perms
    assert len(calls) >= 20


def test_only_the_client_module_talks_to_the_api_server_directly() -> None:
    offenders = []
    for name, path in modules():
        if name == CLIENT_MODULE:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "kubernetes" or n.startswith("kubernetes.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, (
        "API calls outside herdsman.cluster.kube escape the RBAC check; use Kube/Rest: "
        + ", ".join(offenders)
    )


def test_a_cluster_wide_install_grants_exactly_what_the_operator_calls() -> None:
    docs = render()
    (role,) = operator_roles(docs, "ClusterRole")
    assert not operator_roles(docs, "Role")
    needed = operator_needs(clusterwide=True)
    problems = diff(needed, granted(role))
    assert not problems, f"the chart's ClusterRole and the code disagree:\n{problems}"


@pytest.mark.parametrize("sharded", [False, True], ids=["peering", "sharded"])
def test_a_namespaced_install_grants_roles_in_the_watched_namespaces_only(sharded: bool) -> None:
    docs = render("watchNamespaces={shop,payments}", f"sharding.shards={6 if sharded else 0}")
    roles = operator_roles(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["payments", "shop"]
    needed = operator_needs(clusterwide=False, sharded=sharded)
    in_namespace = {p: w for p, w in needed.items() if is_namespaced(p[0], p[1])}
    cluster_scoped = {p: w for p, w in needed.items() if not is_namespaced(p[0], p[1])}
    for role in roles:
        problems = diff(in_namespace, granted(role))
        assert not problems, f"Role in {role['metadata']['namespace']}:\n{problems}"
    (cluster_role,) = operator_roles(docs, "ClusterRole")
    problems = diff(cluster_scoped, granted(cluster_role))
    assert not problems, f"the namespaced install's ClusterRole:\n{problems}"
    bindings = operator_roles(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["payments", "shop"]
    for binding in bindings + [d for d in docs if d["kind"] == "ClusterRoleBinding"]:
        (subject,) = binding["subjects"]
        assert subject == {"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}


def test_a_sharded_install_grants_the_leases_in_its_own_namespace_and_no_peering() -> None:
    docs = render("sharding.shards=6")
    (role,) = operator_roles(docs, "ClusterRole")
    problems = diff(operator_needs(clusterwide=True, sharded=True), granted(role))
    assert not problems, f"the sharded install's ClusterRole:\n{problems}"
    leases = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == f"{FULLNAME}-shards"
    ]
    (lease_role,) = leases
    assert lease_role["metadata"]["namespace"] == "ops"  # the release's, not the watched ones
    needed = lease_needs()
    assert {p[2] for p in needed} >= {"create", "update", "list"}, "the walk found no Lease calls"
    problems = diff(needed, granted(lease_role))
    assert not problems, f"the shard Leases Role:\n{problems}"
    (binding,) = [
        d
        for d in docs
        if d["kind"] == "RoleBinding" and d["metadata"]["name"] == f"{FULLNAME}-shards"
    ]
    assert binding["subjects"][0]["name"] == FULLNAME
    # Unsharded, no Lease is ever touched: no Role for them.
    assert not [d for d in render() if d["metadata"]["name"] == f"{FULLNAME}-shards"]


def test_the_walk_fails_a_new_call_the_chart_does_not_grant() -> None:
    """The mechanism itself: a new call shows up as missing, an untraceable path is refused."""
    source = (
        "async def route(self, ns, name, deadline):\n"
        "    path = ROUTES.url(ns, name) if ns else ROUTES.url(None, name)\n"
        "    await self.kube.patch(path, {}, deadline=deadline)\n"
        "    await self.kube.get(ROUTES.url(ns, name, 'status'), deadline=deadline)\n"
        "    await self.kube.list(ROUTES.url(ns), deadline=deadline)\n"
        "    cfg.get('key')  # a dict, not the API\n"
    )
    routes = KPath("apps", "v1", "deployments")
    calls = CallFinder(source, "new.py", {"ROUTES": routes}).calls
    assert {c.perm for c in calls} == {
        ("apps", "deployments", "patch"),
        ("apps", "deployments/status", "get"),
        ("apps", "deployments", "list"),
    }
    (role,) = operator_roles(render(), "ClusterRole")
    needed = {c.perm: c.where for c in calls}
    assert "missing ('apps', 'deployments', 'patch')" in diff(needed, granted(role))
    with pytest.raises(Unresolved, match="cannot tell which resource"):
        CallFinder("def f(kube):\n    kube.get(build_path())\n", "bad.py", {})


def test_a_path_passed_through_helpers_is_followed_to_the_callers() -> None:
    routes = KPath("gateway.networking.k8s.io", "v1", "httproutes")
    helpers = (
        "async def first(kube, paths, ns, name):\n"
        "    for path in paths:\n"
        "        return path, await kube.get(path.url(ns, name))\n"
        "async def write(kube, url, body):\n"
        "    await kube.patch(url, body)\n"
        "async def route(kube, ns, name):\n"
        "    path, body = await first(kube, ROUTES, ns, name)\n"
        "    await write(kube, path.url(ns, name, 'status'), {})\n"
    )
    constants = {"ROUTES": [routes]}
    generics = CallFinder(helpers, "h.py", constants).generics
    assert {(g.function, g.param, g.kind) for g in generics} == {
        ("first", "paths", "path"),
        ("write", "url", "url"),
    }
    calls = CallFinder(helpers, "h.py", constants, generics).calls
    assert {c.perm for c in calls} == {
        ("gateway.networking.k8s.io", "httproutes", "get"),
        ("gateway.networking.k8s.io", "httproutes/status", "patch"),
    }


def test_kopf_is_configured_the_way_the_rbac_assumes() -> None:
    settings = kopf_settings(clusterwide=True)
    # Our Events are written by the Applier (events: create comes from the code walk).
    assert settings.posting.enabled is False
    assert settings.peering.mandatory is True
    assert settings.peering.standalone is False


def test_kubectl_herdsman_users_get_what_the_plugin_calls_through_the_edit_role() -> None:
    docs = render()
    edit = next(d for d in docs if d["metadata"]["name"] == f"{FULLNAME}-edit")
    view = next(d for d in docs if d["metadata"]["name"] == f"{FULLNAME}-view")
    labels = edit["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    plugin = {c.perm: c.where for c in code_calls(skip=set(), only=USER_SIDE)}
    assert plugin, "the walk found no plugin calls"
    ours = {p: w for p, w in plugin.items() if p[0] == "herdsman.dev"}
    missing = sorted(set(ours) - granted(edit))
    assert not missing, f"the edit aggregate lacks what kubectl herdsman calls: {missing}"
    # Every authenticated user may ask the API server what they may do (system:basic-user).
    plugin.pop(("authorization.k8s.io", "selfsubjectaccessreviews", "create"))
    # `import` relabels pods, ReplicaSets and Services, which the built-in edit role grants, and
    # reads the Argo Rollout (Argo's own roles aggregate that to edit and view).
    # `set image` and `undo` on a workloadRef rollout patch the Deployment it follows, which
    # the built-in edit role grants too.
    edit_builtin = {
        ("", "pods"),
        ("apps", "replicasets"),
        ("", "services"),
        ("apps", "deployments"),
    }
    imports = {p for p in plugin if (p[0], p[1]) in edit_builtin and p[2] == "patch"}
    imports |= {p for p in plugin if p[0] == "argoproj.io" and p[2] == "get"}
    # The rest (ReplicaSets for `undo`) only reads what the built-in view role already grants.
    rest = {p[2] for p in plugin if p[0] != "herdsman.dev" and p not in imports}
    assert rest <= {"get", "list", "watch"}
    assert {p[2] for p in granted(view)} == {"get", "list", "watch"}
