"""The plugin's command line: flags anywhere, the namespace from the kubeconfig, errors as one line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from herdsman.cli import main as cli
from herdsman.cli.actions import ActionError, set_images, undo
from herdsman.cluster.apply import ANNOTATION_TEMPLATE
from herdsman.cluster.kube import JSON_PATCH, KubeError
from herdsman.naming import LABEL_REVISION

pytestmark = pytest.mark.unit


class FakeRest:
    """Answers GETs from a dict of rollouts; records writes; raises what it is told to."""

    def __init__(self, rollouts: dict[str, dict[str, Any]] | None = None) -> None:
        self.rollouts = rollouts or {}
        self.patches: list[tuple[str, Any, str]] = []
        self.fail: Exception | None = None
        self.fail_patch: Exception | None = None  # writes only

    def get(self, path: str, **_: Any) -> dict[str, Any] | None:
        if self.fail:
            raise self.fail
        return self.rollouts.get(path.rsplit("/", 1)[-1])

    def list(self, path: str, **_: Any) -> list[dict[str, Any]]:
        if self.fail:
            raise self.fail
        return list(self.rollouts.values())

    def patch(
        self, path: str, body: Any, *, content_type: str = "merge", **_: Any
    ) -> dict[str, Any]:
        failure = self.fail or self.fail_patch
        if failure:
            raise failure
        self.patches.append((path, body, content_type))
        return (
            self.rollouts.get(path.split("/")[-1]) or self.rollouts.get(path.split("/")[-2]) or {}
        )


def body(name: str = "checkout", containers: tuple[str, ...] = ("app",)) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7"},
        "spec": {
            "replicas": 3,
            "template": {"spec": {"containers": [{"name": c, "image": "old"} for c in containers]}},
            "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}},
        },
        "status": {"currentStepIndex": 1, "step": "2/2", "phase": "Paused"},
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRest:
    rest = FakeRest({"checkout": body()})
    seen: list[argparse.Namespace] = []

    def connect(args: argparse.Namespace) -> tuple[FakeRest, str]:
        seen.append(args)
        return rest, args.namespace or "shop"

    monkeypatch.setattr(cli, "connect", connect)
    rest.seen = seen  # type: ignore[attr-defined]
    return rest


def test_global_flags_before_or_after_the_command(fake: FakeRest) -> None:
    assert cli.main(["-n", "before", "pause", "checkout"]) == 0
    assert cli.main(["pause", "checkout", "-n", "after", "--context", "c"]) == 0
    assert cli.main(["--kubeconfig", "k", "resume", "checkout"]) == 0
    seen = [(a.namespace, a.context, a.kubeconfig) for a in fake.seen]  # type: ignore[attr-defined]
    assert seen == [("before", None, None), ("after", "c", None), (None, None, "k")]
    assert [p[0] for p in fake.patches] == [
        f"/apis/herdsman.dev/v1alpha1/namespaces/{ns}/rollouts/checkout"
        for ns in ("before", "after", "shop")
    ]


def test_verbs_print_one_confirmation_line(
    fake: FakeRest, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["promote", "checkout"]) == 0
    assert cli.main(["promote", "checkout", "--full"]) == 0
    assert cli.main(["pause", "checkout"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "rollout shop/checkout: promotion requested from step 2/2",
        "rollout shop/checkout: full promotion requested (every remaining step skipped)",
        "rollout shop/checkout: paused",
    ]
    assert fake.patches[0][1] == {"status": {"promote": {"fromStep": 1, "full": False}}}
    assert fake.patches[2][1] == {"spec": {"paused": True}}


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (
            KubeError(404, "NotFound", 'rollouts "checkout" not found'),
            "rollout shop/checkout not found",
        ),
        (KubeError(403, "Forbidden", "user cannot patch"), "not allowed: user cannot patch"),
        (KubeError(422, "Invalid", "spec.paused: Invalid value"), "spec.paused: Invalid value"),
        (ConnectionError("refused"), "cannot reach the API server: refused"),
        (TimeoutError("slow"), "cannot reach the API server: slow"),
    ],
)
def test_api_errors_are_one_line_on_stderr(
    fake: FakeRest, capsys: pytest.CaptureFixture[str], failure: Exception, message: str
) -> None:
    fake.fail = failure
    assert cli.main(["abort", "checkout"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: {message}"
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_action_errors_are_one_line(fake: FakeRest, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["retry", "checkout"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: rollout shop/checkout is not aborted: nothing to retry"
    )
    assert cli.main(["status", "missing"]) == 1
    assert capsys.readouterr().err.strip() == "error: rollout shop/missing not found"


def test_set_image_argument_shape(fake: FakeRest, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["set", "image", "checkout", "app"]) == 2
    assert "expected CONTAINER=IMAGE, got 'app'" in capsys.readouterr().err
    assert cli.main(["set", "image", "checkout", "app=new:2", "-n", "shop"]) == 0
    assert capsys.readouterr().out.strip() == "rollout shop/checkout: image updated (app=new:2)"


def test_set_images_is_one_guarded_patch() -> None:
    rest = FakeRest({"checkout": body(containers=("app", "sidecar", "proxy"))})
    changed = set_images(rest, "shop", "checkout", {"sidecar": "s:2", "app": "a:2"})  # type: ignore[arg-type]
    assert changed == {"app": "a:2", "sidecar": "s:2"}
    [(_, ops, content_type)] = rest.patches
    assert content_type == JSON_PATCH
    assert ops == [
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "a:2"},
        {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "sidecar"},
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "s:2"},
    ]
    everything = set_images(rest, "shop", "checkout", {"*": "all:3"})  # type: ignore[arg-type]
    assert everything == {"app": "all:3", "sidecar": "all:3", "proxy": "all:3"}
    with pytest.raises(
        ActionError, match=r"no container 'db' in shop/checkout \(has: app, sidecar, proxy\)"
    ):
        set_images(rest, "shop", "checkout", {"db": "x"})  # type: ignore[arg-type]


def test_get_lists_and_summarises(fake: FakeRest, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["get"]) == 0
    listing = capsys.readouterr().out
    assert "checkout" in listing
    assert "Paused" in listing
    assert "2/2" in listing
    assert cli.main(["get", "checkout"]) == 0
    assert "shop/checkout" in capsys.readouterr().out
    fake.rollouts.clear()
    assert cli.main(["get"]) == 0
    assert "No rollouts found in namespace shop." in capsys.readouterr().err


def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    user = {"name": "u", "user": {"token": "t"}}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [user],
                "contexts": [
                    {"name": "plain", "context": {"cluster": "c", "user": "u"}},
                    {"name": "shop", "context": {"cluster": "c", "user": "u", "namespace": "shop"}},
                ],
                "current-context": "shop",
            }
        )
    )
    return path


def args(**given: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"namespace": None, "context": None, **given})


def test_the_namespace_comes_from_the_kubeconfig_context(tmp_path: Path) -> None:
    path = str(kubeconfig(tmp_path))
    assert cli.connect(args(kubeconfig=path))[1] == "shop"
    assert cli.connect(args(kubeconfig=path, context="plain"))[1] == "default"
    assert cli.connect(args(kubeconfig=path, namespace="given"))[1] == "given"


def test_a_missing_kubeconfig_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["get", "--kubeconfig", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load kubeconfig")
    assert "Traceback" not in err


class UndoRest(FakeRest):
    """Two kept revisions; the rollout is on revision 2 and has been edited twice."""

    def __init__(self) -> None:
        rollout = body()
        rollout["metadata"]["generation"] = 2
        rollout["status"]["currentRevision"] = 2
        super().__init__({"checkout": rollout})

    def list(self, path: str, **_: Any) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {
                    "labels": {LABEL_REVISION: str(revision)},
                    "annotations": {ANNOTATION_TEMPLATE: json.dumps({"image": f"v{revision}"})},
                }
            }
            for revision in (1, 2)
        ]


def test_undo_guards_on_the_generation_not_the_resource_version() -> None:
    rest = UndoRest()
    assert undo(rest, "shop", "checkout") == 1  # type: ignore[arg-type]
    [(_, ops, content_type)] = rest.patches
    assert content_type == JSON_PATCH
    # Status writes bump resourceVersion all the time; only a spec edit makes the choice stale.
    assert ops == [
        {"op": "test", "path": "/metadata/generation", "value": 2},
        {"op": "replace", "path": "/spec/template", "value": {"image": "v1"}},
    ]


def test_undo_whose_guard_trips_says_so() -> None:
    rest = UndoRest()
    # What the API server answers when a JSON patch `test` op fails.
    rest.fail_patch = KubeError(422, "Invalid", "the server rejected our request")
    with pytest.raises(ActionError, match="was edited while undoing; nothing was changed"):
        undo(rest, "shop", "checkout")  # type: ignore[arg-type]


# --- workloadRef: the template lives in the Deployment ---------------------------------------


def ref_body() -> dict[str, Any]:
    rollout = body()
    del rollout["spec"]["template"]
    rollout["spec"]["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    return rollout


def deployment() -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop", "generation": 4},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "old"}]}}},
    }


def test_set_image_on_a_workload_ref_rollout_edits_the_deployment(
    fake: FakeRest, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.rollouts = {"checkout": ref_body(), "web": deployment()}
    assert cli.main(["set", "image", "checkout", "app=new:2"]) == 0
    [(path, ops, content_type)] = fake.patches
    assert path == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert content_type == JSON_PATCH
    assert ops[-1] == {
        "op": "replace",
        "path": "/spec/template/spec/containers/0/image",
        "value": "new:2",
    }
    assert capsys.readouterr().out.strip() == (
        "rollout shop/checkout: image updated in Deployment shop/web, which it follows (app=new:2)"
    )


def test_set_image_names_a_missing_deployment(
    fake: FakeRest, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.rollouts = {"checkout": ref_body()}
    assert cli.main(["set", "image", "checkout", "app=new:2"]) == 1
    assert "spec.workloadRef.name: Deployment 'web' not found" in capsys.readouterr().err
    assert fake.patches == []


def test_undo_on_a_workload_ref_rollout_puts_the_template_back_in_the_deployment() -> None:
    rest = UndoRest()
    rest.rollouts = {"checkout": {**ref_body(), "metadata": {"generation": 9}}, "web": deployment()}
    rest.rollouts["checkout"]["status"] = {"currentRevision": 2}
    assert undo(rest, "shop", "checkout") == 1  # type: ignore[arg-type]
    [(path, ops, _)] = rest.patches
    assert path == "/apis/apps/v1/namespaces/shop/deployments/web"
    assert ops[0] == {"op": "test", "path": "/metadata/generation", "value": 4}
