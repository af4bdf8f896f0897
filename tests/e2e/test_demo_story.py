"""The demo's story, end to end, and the dashboard that shows it, in a real browser.

One namespace for the module: `herdsman simulate` (the package's synthetic service, as a
process), a real Prometheus scraping it, and the operator with its dashboard on. The manifest
is the demo's own (examples/demo/checkout.yaml). Release 2 must be promoted by the judge and
release 3 (+30% latency, 5% errors) rolled back by it: the test never promotes nor aborts.

Then Debian's Chromium looks at the dashboard: the rollout list, the canary report of the run
that failed (its plots must hold that run's numbers), a weight change that appears while the
page stays loaded, and a promote that RBAC refuses for one user and allows for another. The
screenshots are saved as artifacts (tests/harness/browser.py); HERDSMAN_UPDATE_DOCS=1 also
refreshes the README's picture of the canary report (docs/canary-report.png).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import prometheus
from harness.browser import browser, screenshot
from harness.cluster import ROOT, Cluster, token_kubeconfig, wait_until
from harness.local_http import free_port
from harness.operator import OperatorProcess
from harness.rollouts import IMAGE_V2, IMAGE_V3, Rollouts, rollout
from herdsman.cluster.kube import ANALYSIS_RUNS
from herdsman.cluster.kube import Path as KPath

pytestmark = pytest.mark.e2e

MANIFEST = ROOT / "examples" / "demo" / "checkout.yaml"
NAMESPACES = KPath("", "v1", "namespaces", namespaced=False)
RUN2, RUN3 = "checkout-v002-step1-a0", "checkout-v003-step1-a0"


@dataclass
class Story:
    cluster: Cluster
    ns: str
    rollouts: Rollouts
    operator: OperatorProcess
    dashboard: str
    tmp: Path

    def run(self, name: str) -> dict[str, Any]:
        body = self.rollouts.rest.get(ANALYSIS_RUNS.url(self.ns, name))
        assert body is not None, f"no AnalysisRun {name}"
        return body


@pytest.fixture(scope="module")
def story(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    binary = prometheus.binary_or_skip()
    tmp = tmp_path_factory.mktemp("story")
    ns = f"t-demo-story-{secrets.token_hex(2)}"
    cluster.rest.create(
        NAMESPACES.url(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    )
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    sim_port, dash_port = free_port(), free_port()
    simulator = subprocess.Popen(
        [sys.executable, "-m", "herdsman", "simulate", "-n", ns, "--rollout", "checkout",
         "--port", str(sim_port), "--behaviour", f"{IMAGE_V3}=latency:0.13,errors:0.05"],
        env=env, stdout=(tmp / "simulate.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    prom = prometheus.start([f"127.0.0.1:{sim_port}"], binary=binary)
    operator = OperatorProcess(
        cluster=cluster,
        namespaces=[ns],
        log_path=tmp / "operator.log",
        extra_args=[
            f"--dashboard-port={dash_port}",
            "--dashboard-address=127.0.0.1",
            "--dashboard-actions",
        ],
    )
    try:
        operator.start()
        text = MANIFEST.read_text().replace("__PROMETHEUS__", prom.url)
        cluster.kubectl("-n", ns, "apply", "-f", "-", input=text)
        yield Story(
            cluster, ns, Rollouts(cluster, ns), operator, f"http://127.0.0.1:{dash_port}/", tmp
        )
    finally:
        operator.stop()
        prom.stop()
        simulator.terminate()
        simulator.wait(timeout=10)
        cluster.rest.delete(NAMESPACES.url(None, ns))


def test_the_judge_promotes_release_2_and_rolls_back_release_3_on_its_own(story: Story) -> None:
    rollouts = story.rollouts
    rollouts.wait_healthy("checkout-v001")

    rollouts.set_image(IMAGE_V2)
    status = rollouts.wait_healthy("checkout-v002", timeout=150)
    passed = story.run(RUN2)["status"]
    assert passed["phase"] == "Successful"
    assert passed["score"]["classification"] == "pass"
    for result in passed["metricResults"]:
        assert result["judgement"]["classification"] == "Pass", result
        assert result["judgement"]["canarySeries"]["values"], "the report needs the points"
    assert status["weights"] == {"stable": 100, "canary": 0, "baseline": 0}

    rollouts.set_image(IMAGE_V3)
    status = rollouts.wait_phase("Degraded", timeout=150)
    assert status["stableServerGroup"] == "checkout-v002"
    assert status["weights"]["canary"] == 0
    assert "latency" in status["abortReason"]  # the operator aborted, not a person
    failed = story.run(RUN3)["status"]
    assert failed["phase"] == "Failed"
    verdicts = {r["name"]: r["judgement"] for r in failed["metricResults"]}
    assert verdicts["latency"]["classification"] == "High"
    assert verdicts["latency"]["pValue"] < 0.05
    assert 1.2 < verdicts["latency"]["ratio"] < 1.4  # +30%, measured
    assert verdicts["error-rate"]["classification"] == "High"
    assert failed["score"]["score"] == 0
    reasons = story.operator.logged("checkout", "RolloutAborted")
    assert "RolloutAborted" in reasons
    assert not {"Promoted", "PromotedFull"} & set(reasons), "nobody promoted anything"
    rollouts.wait(lambda _: rollouts.sizes()["checkout-v003"] == (0, 0), what="release 3 drained")


# --- the dashboard ------------------------------------------------------------------------------


def _wait_js(page: Any, script: str, what: str, timeout: float = 20.0) -> Any:
    return wait_until(lambda: page.execute_script(script), timeout=timeout, what=what)


def _traces(page: Any, metric: str) -> list[dict[str, Any]]:
    script = (
        "const p = document.querySelector(`section.metric[data-metric='" + metric + "'] .plot`);"
        "return p && p.data ? JSON.stringify(p.data) : null;"
    )
    return list(json.loads(_wait_js(page, script, f"the {metric} plot drawn")))


def _trace(traces: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(t for t in traces if t.get("type", "scatter") == kind and t.get("name") == name)


def _service_account(cluster: Cluster, ns: str, name: str, verbs: dict[str, list[str]]) -> str:
    """A ServiceAccount with a Role of exactly these verbs per rollouts resource; its token."""
    rules = [
        {"apiGroups": ["herdsman.dev"], "resources": [resource], "verbs": v}
        for resource, v in verbs.items()
    ]
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
    ]  # fmt: skip
    cluster.kubectl(
        "-n",
        ns,
        "apply",
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}),
    )
    return cluster.kubectl("-n", ns, "create", "token", name, "--duration=1h").strip()


READ = ["get", "list", "watch"]
NOTICE = "const n = document.getElementById('notice'); return !n.hidden && n.textContent"
DETAIL_AT_50 = "const w = document.getElementById('weights'); return w && w.dataset.canary === '50'"


def _use_token(page: Any, token: str) -> None:
    from selenium.webdriver.common.by import By

    field = page.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    page.find_element(By.ID, "token-save").click()


def test_the_dashboard_shows_the_story_live_and_acts_only_as_rbac_allows(story: Story) -> None:
    from selenium.webdriver.common.by import By

    rollouts, ns = story.rollouts, story.ns
    run = wait_until(
        lambda: (lambda r: r if (r or {}).get("status", {}).get("phase") == "Failed" else None)(
            rollouts.rest.get(ANALYSIS_RUNS.url(ns, RUN3))
        ),
        timeout=200,
        what="release 3's failed run (the story test runs first)",
    )
    viewer = _service_account(story.cluster, ns, "viewer", {"rollouts": READ})
    releaser = _service_account(
        story.cluster, ns, "releaser", {"rollouts": [*READ, "patch"], "rollouts/status": ["patch"]}
    )
    with browser() as page:
        page.get(story.dashboard)
        _wait_js(
            page,
            f"return document.querySelector(`#rollouts tr[data-ref='{ns}/checkout']`)",
            "the list",
        )
        row = page.find_element(By.CSS_SELECTOR, f"#rollouts tr[data-ref='{ns}/checkout']")
        assert "Degraded" in row.text
        screenshot(page, "dashboard-list")

        # The canary report of the run the judge failed: its plots hold that run's numbers.
        page.get(f"{story.dashboard}#/run/{ns}/{RUN3}")
        results = {r["name"]: r for r in run["status"]["metricResults"]}
        for metric in ("latency", "error-rate"):
            judgement = results[metric]["judgement"]
            traces = _traces(page, metric)
            for role in ("baseline", "canary"):
                series = judgement[f"{role}Series"]
                over_time = _trace(traces, "scatter", role)
                assert over_time["y"] == series["values"]
                assert len(over_time["x"]) == len(series["timestamps"])
                assert _trace(traces, "box", role)["y"] == series["values"]
            shift = _trace(traces, "scatter", "shift")
            assert shift["y"] == [judgement["shift"]]
            assert shift["error_y"]["array"][0] == pytest.approx(
                judgement["shiftUpper"] - judgement["shift"]
            )
            assert shift["error_y"]["arrayminus"][0] == pytest.approx(
                judgement["shift"] - judgement["shiftLower"]
            )
            verdict = page.find_element(
                By.CSS_SELECTOR, f"section.metric[data-metric='{metric}'] [data-role=verdict]"
            )
            assert verdict.text == "High"
        assert page.find_element(By.CSS_SELECTOR, "#score .big").text.startswith("0")
        report = screenshot(page, "canary-report")
        if os.environ.get("HERDSMAN_UPDATE_DOCS") == "1":
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copy(report, ROOT / "docs" / "canary-report.png")

        # A weight change appears while the page stays loaded (no reload: the marker survives).
        rollouts.create(
            rollout(
                "cart",
                replicas=4,
                steps=[{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}],
            )
        )
        rollouts.wait_healthy("cart-v001", name="cart")
        page.get(story.dashboard)
        cart = f"#rollouts tr[data-ref='{ns}/cart'] td.weights"
        _wait_js(page, f"return document.querySelector(`{cart}`)", "cart in the list")
        page.execute_script("window.__stillTheSamePage = true")
        rollouts.set_image(IMAGE_V2, name="cart")
        _wait_js(
            page, f"return document.querySelector(`{cart}`).dataset.canary === '25'", "25% live", 30
        )
        assert page.execute_script("return window.__stillTheSamePage === true")
        screenshot(page, "dashboard-live-weight")

        # Actions run as the user who pastes a token: RBAC refuses the viewer, allows the releaser.
        page.find_element(By.CSS_SELECTOR, f"#rollouts tr[data-ref='{ns}/cart'] a").click()
        promote = "#rollout .actions button[data-action=promote]"
        rollouts.wait_phase("Paused", name="cart")
        _wait_js(
            page,
            f"const b = document.querySelector(`{promote}`); return b && !b.disabled",
            "promote offered",
        )
        _use_token(page, viewer)
        page.find_element(By.CSS_SELECTOR, promote).click()
        refusal = _wait_js(
            page,
            NOTICE,
            "an answer",
        )
        assert "not allowed to patch rollouts/status" in refusal, refusal
        screenshot(page, "dashboard-refused")
        time.sleep(1)
        still = rollouts.status("cart")
        assert still["step"] == "2/4", still
        assert not still.get("promote"), still

        _use_token(page, releaser)
        page.find_element(By.CSS_SELECTOR, promote).click()
        _wait_js(
            page, "return document.getElementById('notice').className === 'ok'", "promote accepted"
        )
        _wait_js(
            page,
            DETAIL_AT_50,
            "50% live",
            30,
        )
        assert page.execute_script("return window.__stillTheSamePage === true")
        assert "Promoted" in story.operator.logged("cart", "Promoted")


def _post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_kubectl_herdsman_dashboard_reads_and_acts_with_the_users_kubeconfig(story: Story) -> None:
    ns = story.ns
    viewer = _service_account(story.cluster, ns, "viewer", {"rollouts": READ})
    kubeconfig = token_kubeconfig(story.cluster, viewer, story.tmp / "viewer.kubeconfig")
    port = free_port()
    local = subprocess.Popen(
        [sys.executable, "-m", "herdsman.cli.main", "--kubeconfig", str(kubeconfig), "-n", ns,
         "dashboard", "--port", str(port), "--allow-actions"],
        stdout=(story.tmp / "local-dashboard.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def listed() -> list[str] | None:
            try:
                with urllib.request.urlopen(f"{base}/api/rollouts", timeout=2) as answer:
                    names = [r["name"] for r in json.loads(answer.read())["rollouts"]]
            except OSError:
                return None
            return names if "checkout" in names else None

        assert "checkout" in wait_until(listed, timeout=30, what="the viewer's dashboard lists")
        before = story.rollouts.status()
        headers = {"Content-Type": "application/json", "X-Herdsman-Action": "1"}
        status, body = _post(f"{base}/api/rollouts/{ns}/checkout/retry", headers)
        assert status == 403, body
        assert "not allowed to patch rollouts/status" in body["error"]
        # The cross-site guard: no action without the header a form cannot send.
        status, _ = _post(
            f"{base}/api/rollouts/{ns}/checkout/retry", {"Content-Type": "text/plain"}
        )
        assert status == 400
        after = story.rollouts.status()  # still aborted by the judge, not retried
        assert after["abort"] is True
        assert after.get("attempt", 0) == before.get("attempt", 0)
    finally:
        local.terminate()
        local.wait(timeout=10)
