"""Acting as the user, never as the operator: the dashboard's promote, abort, retry and undo.

The dashboard performs an action with the `herdsman.cli.actions` functions the kubectl plugin
uses, through a client that carries only the user's own credentials:

* `kubectl herdsman dashboard` (local): the user's kubeconfig, exactly as the plugin does.
* the operator's dashboard (`herdsman run --dashboard-port --dashboard-actions`): a bearer token
  the user pastes into the page (`kubectl create token`, or their OIDC id-token), sent with each
  action. `as_user` builds a client for the same API server with that token *instead of* the
  operator's credentials (its client certificate and token are dropped, so the API server
  cannot mistake the request for the operator's), and the API server authenticates it,
  authorises it with the user's RBAC and audits it under the user's name. The operator needs no
  impersonation rights, and holds none.

Before acting, `check` asks the API server whether the user may (a SelfSubjectAccessReview,
which every authenticated user may create), so a refusal names the missing permission instead
of surfacing as a half-done action; the API server still enforces the same RBAC on the patch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from herdsman.cli import actions
from herdsman.cluster.kube import Path, Rest

SELF_SUBJECT_ACCESS_REVIEWS = Path(
    "authorization.k8s.io", "v1", "selfsubjectaccessreviews", namespaced=False
)


@dataclass(frozen=True)
class Action:
    run: Callable[..., Any]
    resource: str  # what the action patches
    subresource: str | None
    verb: str
    done: str


ACTIONS: dict[str, Action] = {
    "promote": Action(actions.promote, "rollouts", "status", "patch", "promotion requested"),
    "abort": Action(actions.abort, "rollouts", "status", "patch", "abort requested"),
    "retry": Action(actions.retry, "rollouts", "status", "patch", "retry requested"),
    "undo": Action(actions.undo, "rollouts", None, "patch", "rolling back"),
}


class Refused(Exception):
    """The user may not do this; the message says which permission is missing."""


def as_user(rest: Rest, token: str) -> Rest:
    """A client for the same API server that authenticates with `token` and nothing else."""
    configuration = copy.deepcopy(rest.api.configuration)
    configuration.cert_file = None
    configuration.key_file = None
    configuration.username = None
    configuration.password = None
    configuration.refresh_api_key_hook = None
    # The key the generated client's auth_settings() reads ("BearerToken"), prefix included.
    configuration.api_key = {"BearerToken": f"Bearer {token}"}
    configuration.api_key_prefix = {}
    return Rest(client.ApiClient(configuration))


def check(rest: Rest, action: str, namespace: str, name: str) -> None:
    """Raise Refused unless the client's user may perform `action` on the rollout."""
    wanted = ACTIONS[action]
    attributes: dict[str, Any] = {
        "group": "herdsman.dev",
        "resource": wanted.resource,
        "verb": wanted.verb,
        "namespace": namespace,
        "name": name,
    }
    if wanted.subresource:
        attributes["subresource"] = wanted.subresource
    review = rest.create(
        SELF_SUBJECT_ACCESS_REVIEWS.url(),
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        },
    )
    status = review.get("status") or {}
    if not status.get("allowed"):
        what = wanted.resource + (f"/{wanted.subresource}" if wanted.subresource else "")
        why = status.get("reason") or status.get("evaluationError") or "no RBAC rule allows it"
        raise Refused(f"not allowed to {wanted.verb} {what} in namespace {namespace}: {why}")


def perform(rest: Rest, action: str, namespace: str, name: str, **options: Any) -> str:
    """Check, then act through the plugin's own code; a message for the person who asked."""
    if action not in ACTIONS:
        raise actions.ActionError(f"unknown action {action!r}")
    check(rest, action, namespace, name)
    wanted = ACTIONS[action]
    result = wanted.run(rest, namespace, name, **options)
    if action == "undo":
        return f"rollout {namespace}/{name}: {wanted.done} to revision {result}"
    return f"rollout {namespace}/{name}: {wanted.done}"
