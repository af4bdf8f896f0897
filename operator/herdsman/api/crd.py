"""CustomResourceDefinitions generated from the pydantic models: the models are the single source.

`make crds` writes `crds/<plural>.yaml` with `python -m herdsman.api.crd crds/`; a unit test
regenerates them in memory and fails when the committed files drift.

Pydantic emits JSON Schema (with `$ref`, `anyOf` for optionals, titles); the API server wants a
*structural* OpenAPI v3 schema. `structural()` bridges the two: refs are inlined, optionals become
plain (absent) fields, models that keep unknown fields are marked to preserve them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from herdsman.api.base import GROUP, VERSION

_DROP = {"title", "additionalProperties", "discriminator"}


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """Turn a pydantic JSON schema (with `$defs`) into a structural CRD schema."""
    defs = schema.get("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        if "$ref" in node:
            target = defs[node.pop("$ref").split("/")[-1]]
            node = {**target, **node}
        if "allOf" in node and len(node["allOf"]) == 1:
            inner = node.pop("allOf")[0]
            node = {**convert(inner), **node}
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            options = [opt for opt in node["anyOf"] if opt.get("type") != "null"]
            if len(options) == 1:
                node.pop("anyOf")
                node = {**convert(options[0]), **node}
            elif all(opt.get("type") in ("integer", "string") for opt in options):
                node["x-kubernetes-int-or-string"] = True
        if node.get("default", 0) is None:
            node.pop("default")
        if "const" in node:
            node["enum"] = [node.pop("const")]
        if node.get("additionalProperties") is True and "properties" in node:
            # A model that keeps fields it does not know (pod specs): the API server must too.
            node["x-kubernetes-preserve-unknown-fields"] = True
        elif node.get("additionalProperties") is True or node == {}:
            node = {"x-kubernetes-preserve-unknown-fields": True, **node}
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            node["additionalProperties"] = convert(extra)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
                continue
            if key == "$defs":
                continue
            if key == "properties":
                out[key] = {name: convert(sub) for name, sub in value.items()}
            elif key in ("items", "anyOf"):
                out[key] = convert(value)
            else:
                out[key] = value
        if "x-kubernetes-int-or-string" in out:
            # The only anyOf a structural schema allows is the bare int-or-string pair; the
            # branches' constraints move up (pattern only binds strings, minimum only numbers).
            out.pop("type", None)
            for branch in out.get("anyOf", []):
                for key, value in branch.items():
                    if key != "type":
                        out.setdefault(key, value)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            # JSON Schema writes the bound as a number; OpenAPI v3.0 as a flag on min/max.
            if bound in out and not isinstance(out[bound], bool):
                out[inclusive] = out.pop(bound)
                out[bound] = True
        if (
            out.get("type") == "object"
            and "properties" not in out
            and "additionalProperties" not in out
        ):
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    converted = convert({k: v for k, v in schema.items() if k != "$defs"})
    assert isinstance(converted, dict)
    return converted


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""

    def to_crd(self) -> dict[str, Any]:
        col: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            col["priority"] = self.priority
        if self.description:
            col["description"] = self.description
        return col


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class CrdSpec:
    """How one kind is served: its models and the API server features it gets."""

    kind: str
    plural: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel] | None
    short_names: tuple[str, ...] = ()
    scope: str = "Namespaced"
    printer_columns: tuple[PrinterColumn, ...] = ()
    scale: bool = False
    description: str = ""
    categories: tuple[str, ...] = ("herdsman",)
    extra_validations: list[dict[str, str]] = field(default_factory=list)
    # metadata.name is the one metadata field a CRD may constrain; a kind whose name is the
    # prefix of the names of the objects we create needs room left for their suffixes.
    max_name_length: int | None = None

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"

    def manifest(self) -> dict[str, Any]:
        spec_schema = structural(
            self.spec_model.model_json_schema(by_alias=True, mode="validation")
        )
        properties: dict[str, Any] = {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"}
            if self.max_name_length is None
            else {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": self.max_name_length}},
            },
            "spec": spec_schema,
        }
        if self.status_model is not None:
            status_schema = structural(
                self.status_model.model_json_schema(by_alias=True, mode="validation")
            )
            status_schema.pop("required", None)
            properties["status"] = status_schema
        root: dict[str, Any] = {"type": "object", "properties": properties, "required": ["spec"]}
        if self.extra_validations:
            root["x-kubernetes-validations"] = list(self.extra_validations)
        if self.description:
            root["description"] = self.description
        subresources: dict[str, Any] = {}
        if self.status_model is not None:
            subresources["status"] = {}
        if self.scale:
            subresources["scale"] = {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            }
        version: dict[str, Any] = {
            "name": VERSION,
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": root},
        }
        if subresources:
            version["subresources"] = subresources
        if self.printer_columns:
            version["additionalPrinterColumns"] = [c.to_crd() for c in self.printer_columns]
        names: dict[str, Any] = {
            "kind": self.kind,
            "listKind": f"{self.kind}List",
            "plural": self.plural,
            "singular": self.kind.lower(),
            "categories": list(self.categories),
        }
        if self.short_names:
            names["shortNames"] = list(self.short_names)
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": self.name, "labels": {"app.kubernetes.io/part-of": "herdsman"}},
            "spec": {"group": GROUP, "scope": self.scope, "names": names, "versions": [version]},
        }


def registry() -> list[CrdSpec]:
    """Every CRD Herdsman serves. Imported lazily so each API module stays independent."""
    from herdsman.api import registry as kinds

    return kinds.ALL


HEADER = (
    "# Generated from the pydantic models in operator/herdsman/api by `make crds`. Do not edit.\n"
)


def render(spec: CrdSpec) -> str:
    return HEADER + yaml.safe_dump(spec.manifest(), sort_keys=False, width=120)


def rendered_files() -> dict[str, str]:
    return {f"{spec.plural}.yaml": render(spec) for spec in registry()}


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "crds")
    out.mkdir(parents=True, exist_ok=True)
    wanted = rendered_files()
    for stale in out.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        (out / name).write_text(text)
    print(f"wrote {len(wanted)} CRDs to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
