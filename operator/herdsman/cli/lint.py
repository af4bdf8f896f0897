"""`kubectl herdsman lint`: refuse offline what the API server would refuse, in its words.

Each Herdsman document is checked against the CRD schema generated in memory from the models
(`herdsman.api.registry`), never a copy that could drift: structural checks after defaulting,
then every CEL rule (see `herdsman.cli.schema`). A Rollout that passes is then parsed with the
operator's own model, and checked for what needs no cluster but is beyond a schema: routes named
by steps but not managed, routers that cannot route by header. Analysis kinds get their
conditions compiled and their metrics checked (herdsman.analysis.checks). Warnings are printed
as `warning: <field>: <message>` and never change the exit code.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml
from pydantic import ValidationError

from herdsman.analysis.checks import spec_findings
from herdsman.api.base import GROUP
from herdsman.api.crd import CrdSpec, registry
from herdsman.api.rollout import Rollout
from herdsman.cli.differences import rollout_warnings
from herdsman.cli.schema import FieldError, Schema, validate
from herdsman.engine.validation import spec_problems

ANALYSIS_KINDS = ("AnalysisTemplate", "ClusterAnalysisTemplate", "AnalysisRun")

# metadata.name of a namespaced object: a DNS-1123 subdomain.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass
class Document:
    """One YAML document of the input and what lint found in it."""

    number: int  # 1-based position in its file
    source: str
    kind: str
    name: str
    errors: list[FieldError] = field(default_factory=list)
    # Valid, but asserts nothing or differs from Argo Rollouts there; exit 0.
    warnings: list[FieldError] = field(default_factory=list)
    note: str = ""  # why it was skipped, when it was
    body: dict[str, Any] | None = None  # defaulted, as the API server would store it
    rollout: Rollout | None = None
    rules_checked: bool = True  # False when structural errors stopped the CEL rules

    @property
    def checked(self) -> bool:
        return not self.note

    @property
    def label(self) -> str:
        return f"{self.kind or '?'}/{self.name or '?'}"


@dataclass
class Report:
    documents: list[Document]

    @property
    def errors(self) -> int:
        return sum(len(d.errors) for d in self.documents)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def rollouts(self) -> list[Document]:
        return [d for d in self.documents if d.kind == "Rollout" and d.checked]


@cache
def _crds() -> dict[str, CrdSpec]:
    return {spec.kind: spec for spec in registry()}


@cache
def schema_for(kind: str) -> Schema | None:
    """The validation schema of a Herdsman kind, as the API server applies it on create."""
    spec = _crds().get(kind)
    if spec is None:
        return None
    root: Schema = copy.deepcopy(
        spec.manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    )
    # The API server checks ObjectMeta itself (see _metadata_errors), and a create ignores
    # status when the status subresource is enabled.
    # The one metadata rule of our own, a Rollout's name length (server group names are label
    # values), stays: the API server applies it too.
    name = root["properties"]["metadata"].get("properties", {}).get("name")
    root["properties"]["metadata"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        **({"properties": {"name": name}} if name else {}),
    }
    root["properties"].pop("status", None)
    return root


def lint_text(text: str, source: str = "<stdin>") -> Report:
    try:
        loaded = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        doc = Document(1, source, "", "", [FieldError("", "Invalid value", f"not YAML: {err}")])
        return Report([doc])
    return Report(list(_lint_documents(loaded, source)))


def _lint_documents(loaded: Iterable[Any], source: str) -> Iterable[Document]:
    for number, item in enumerate(loaded, start=1):
        if item is None:
            continue  # an empty document, e.g. a trailing `---`
        if not isinstance(item, dict):
            yield Document(
                number,
                source,
                "",
                "",
                [FieldError("", "Invalid value", "a document must be a mapping (an object)")],
            )
            continue
        yield lint_object(item, number=number, source=source)


def lint_object(obj: dict[str, Any], *, number: int = 1, source: str = "<object>") -> Document:
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    doc = Document(number, source, kind, str((meta or {}).get("name") or ""))
    api_version = str(obj.get("apiVersion") or "")
    group, _, version = api_version.rpartition("/")
    if group != GROUP:
        doc.note = f"skipped: {api_version or 'no apiVersion'} is not a {GROUP} kind"
        return doc
    crd = _crds().get(kind)
    schema = schema_for(kind)
    if crd is None or schema is None:
        doc.errors.append(
            FieldError("kind", "Unsupported value", f"not a kind {GROUP} serves", repr(kind))
        )
        return doc
    served = crd.manifest()["spec"]["versions"][0]["name"]
    if version != served:
        doc.errors.append(
            FieldError(
                "apiVersion",
                "Unsupported value",
                f'supported values: "{GROUP}/{served}"',
                f'"{api_version}"',
            )
        )
        return doc
    body = {k: v for k, v in obj.items() if k != "status"}
    defaulted, errors, doc.rules_checked = validate(body, schema)
    doc.body = defaulted
    doc.errors.extend(_metadata_errors(meta or {}))
    doc.errors.extend(errors)
    if not doc.errors and kind in ANALYSIS_KINDS:
        spec = defaulted.get("spec")
        for finding in spec_findings(spec if isinstance(spec, dict) else {}):
            found = FieldError(
                finding.path,
                "Invalid value",
                finding.message,
                None if finding.value is None else json.dumps(finding.value),
            )
            (doc.errors if finding.severity == "error" else doc.warnings).append(found)
    if doc.errors or kind != "Rollout":
        return doc
    try:
        doc.rollout = Rollout.model_validate(defaulted)
    except ValidationError as err:
        # The schema let it through but the operator's model would not: a drift between the
        # two that the API server cannot see, reported all the same.
        for problem in err.errors():
            where = _loc(problem["loc"])
            doc.errors.append(
                FieldError(where, "Invalid value", f"the operator refuses it: {problem['msg']}")
            )
        return doc
    doc.errors.extend(semantic_errors(doc.rollout))
    doc.warnings.extend(
        FieldError(path, "Warning", detail) for path, detail in rollout_warnings(doc.rollout)
    )
    return doc


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else part)
    return out


def _metadata_errors(meta: dict[str, Any]) -> list[FieldError]:
    name = meta.get("name")
    if not name:
        if meta.get("generateName"):
            return []
        return [FieldError("metadata.name", "Required value", "name or generateName is required")]
    if not isinstance(name, str) or len(name) > 253 or not _SUBDOMAIN.match(name):
        return [
            FieldError(
                "metadata.name",
                "Invalid value",
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character",
                f'"{name}"',
            )
        ]
    return []


def semantic_errors(rollout: Rollout) -> list[FieldError]:
    """What needs no cluster but is beyond the schema: the operator's own checks
    (`engine.validation.spec_problems`), which it reports as InvalidSpec."""
    return [FieldError(p.path, p.kind, p.detail, p.value) for p in spec_problems(rollout)]


def render(report: Report) -> list[str]:
    """Lines for the terminal: each document's verdict, then its errors, field path first."""
    lines: list[str] = []
    for doc in report.documents:
        where = f"{doc.source}, document {doc.number}"
        if doc.note:
            lines.append(f"{doc.label} ({where}): {doc.note}")
        elif doc.errors:
            count = len(doc.errors)
            lines.append(f"{doc.label} ({where}): {count} error{'s' if count > 1 else ''}")
            lines.extend(f"  {error}" for error in doc.errors)
            if not doc.rules_checked:
                # The API server stops at the same point; say so, or a fix reveals "new" errors.
                lines.append("  (CEL rules not evaluated until the errors above are fixed)")
        else:
            lines.append(f"{doc.label} ({where}): valid")
        lines.extend(f"  warning: {w.path}: {w.detail}" for w in doc.warnings)
    if not report.documents:
        lines.append("no documents found")
    return lines
