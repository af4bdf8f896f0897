"""Traffic routing: the routers a canary can drive, with Argo Rollouts' field names.

Each router's model lives here beside `TrafficRouting`, which holds exactly one of them; the
code that writes each router's objects lives in `herdsman.traffic`.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from herdsman.api.base import ApiModel, ShortName, exactly_one, validations


class GatewayAPIRouting(ApiModel):
    http_route: ShortName = Field(
        ..., description="The HTTPRoute whose backendRefs carry the weights."
    )
    namespace: ShortName | None = Field(None, description="Defaults to the Rollout's namespace.")
    rule_names: list[ShortName] = Field(
        default_factory=list,
        max_length=16,
        description="Rules to manage; all rules naming the stable service when empty.",
    )


class NginxRouting(ApiModel):
    stable_ingress: ShortName = Field(
        ..., description="The Ingress a canary Ingress is generated from."
    )
    annotation_prefix: str = Field("nginx.ingress.kubernetes.io", max_length=253)
    additional_ingress_annotations: dict[str, str] = Field(default_factory=dict)


class IstioVirtualService(ApiModel):
    name: ShortName
    routes: list[ShortName] = Field(
        default_factory=list, max_length=16, description="Named HTTP routes; all when empty."
    )


class IstioDestinationRule(ApiModel):
    name: ShortName
    canary_subset_name: ShortName
    stable_subset_name: ShortName


class IstioRouting(ApiModel):
    virtual_service: IstioVirtualService
    destination_rule: IstioDestinationRule | None = None


class SMIRouting(ApiModel):
    root_service: ShortName | None = Field(None, description="Defaults to the stable service.")
    traffic_split_name: ShortName | None = Field(
        None, description="Defaults to the Rollout's name."
    )


class ManagedRoute(ApiModel):
    name: ShortName


ROUTERS = ["gatewayAPI", "nginx", "istio", "smi"]


class TrafficRouting(ApiModel):
    model_config = ConfigDict(json_schema_extra=validations(exactly_one(ROUTERS, "trafficRouting")))

    gateway_api: GatewayAPIRouting | None = Field(None, alias="gatewayAPI")
    nginx: NginxRouting | None = None
    istio: IstioRouting | None = None
    smi: SMIRouting | None = None

    @property
    def kind(self) -> str:
        """The router in use: the field that is set (the CRD allows exactly one)."""
        for name, value in (
            ("gatewayAPI", self.gateway_api),
            ("nginx", self.nginx),
            ("istio", self.istio),
            ("smi", self.smi),
        ):
            if value is not None:
                return name
        raise ValueError("trafficRouting: no router set")

    managed_routes: list[ManagedRoute] = Field(
        default_factory=list,
        max_length=16,
        description="Header and mirror routes the steps may set, in precedence order.",
    )
