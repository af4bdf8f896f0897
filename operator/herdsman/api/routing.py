"""Traffic routing: the routers a canary can drive, with Argo Rollouts' field names.

Each router's model lives here beside `TrafficRouting`, which holds one or more of them (Argo
moves every router it names: nginx + smi, alb + istio); the code that writes each router's
objects lives in `herdsman.traffic`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

# Objects the operator finds or patches by name (routes, rules, splits, Ingresses) are DNS
# subdomains, up to 253 characters as in Argo; Services stay DNS labels (63).
from herdsman.api.base import ApiModel, Name, ShortName, cel, validations


class GatewayAPIRouting(ApiModel):
    http_route: Name = Field(..., description="The HTTPRoute whose backendRefs carry the weights.")
    namespace: ShortName | None = Field(None, description="Defaults to the Rollout's namespace.")
    rule_names: list[ShortName] = Field(
        default_factory=list,
        max_length=16,
        description="Rules to manage; all rules naming the stable service when empty.",
    )


class NginxRouting(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.stableIngress) != (has(self.stableIngresses)"
                " && size(self.stableIngresses) > 0)",
                "set exactly one of stableIngress or stableIngresses",
            )
        )
    )

    stable_ingress: ShortName | None = Field(
        None, description="The Ingress a canary Ingress is generated from."
    )
    stable_ingresses: list[ShortName] = Field(
        default_factory=list,
        max_length=16,
        description="Several Ingresses, each with its own canary Ingress, moved together.",
    )
    annotation_prefix: str = Field("nginx.ingress.kubernetes.io", max_length=253)
    additional_ingress_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Added to the canary Ingress under annotationPrefix (`canary-by-header:"
        " X-Canary` becomes `<prefix>/canary-by-header`), as in Argo.",
    )
    canary_ingress_annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Added to the canary Ingress as they are (no prefix).",
    )

    @property
    def ingresses(self) -> list[str]:
        """Every stable Ingress named, each once."""
        found = [self.stable_ingress] if self.stable_ingress else []
        return found + [i for i in self.stable_ingresses if i not in found]


class IstioTLSRoute(ApiModel):
    port: int | None = Field(None, ge=1, le=65535, description="The route's match port.")
    sni_hosts: list[str] = Field(
        default_factory=list, max_length=16, description="The route's match sniHosts."
    )


class IstioTCPRoute(ApiModel):
    port: int | None = Field(None, ge=1, le=65535, description="The route's match port.")


class IstioVirtualService(ApiModel):
    name: Name
    routes: list[ShortName] = Field(
        default_factory=list,
        max_length=16,
        description="Named HTTP routes; all when empty (and no tlsRoutes or tcpRoutes).",
    )
    tls_routes: list[IstioTLSRoute] = Field(
        default_factory=list,
        max_length=16,
        description="TLS routes, found by their match's port and sniHosts.",
    )
    tcp_routes: list[IstioTCPRoute] = Field(
        default_factory=list, max_length=16, description="TCP routes, found by their match's port."
    )


class IstioDestinationRule(ApiModel):
    name: Name
    canary_subset_name: ShortName
    stable_subset_name: ShortName


class IstioRouting(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.virtualService) != (has(self.virtualServices)"
                " && size(self.virtualServices) > 0)",
                "set exactly one of virtualService or virtualServices",
            )
        )
    )

    virtual_service: IstioVirtualService | None = None
    virtual_services: list[IstioVirtualService] = Field(
        default_factory=list, max_length=16, description="Several VirtualServices, moved together."
    )
    destination_rule: IstioDestinationRule | None = None

    @property
    def all_virtual_services(self) -> list[IstioVirtualService]:
        return [self.virtual_service] if self.virtual_service else list(self.virtual_services)


class SMIRouting(ApiModel):
    root_service: ShortName | None = Field(None, description="Defaults to the stable service.")
    traffic_split_name: Name | None = Field(None, description="Defaults to the Rollout's name.")


class StickinessConfig(ApiModel):
    enabled: bool = Field(..., description="Keep a client on the target group it reached first.")
    duration_seconds: int = Field(
        ..., ge=1, le=604800, description="How long (1 s to 7 days, AWS's bounds)."
    )


class ALBRouting(ApiModel):
    """AWS Load Balancer Controller: the weights go in the Ingress's `actions.<service>`
    annotation (a forward action over target groups), which the controller turns into ALB rules."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.ingress) || (has(self.ingresses) && size(self.ingresses) > 0)",
                "set ingress or ingresses",
            )
        )
    )

    ingress: Name | None = Field(
        None, description="The Ingress whose action annotation carries the weights."
    )
    ingresses: list[Name] = Field(
        default_factory=list, max_length=16, description="Several Ingresses, moved together."
    )
    service_port: int = Field(
        ..., ge=1, le=65535, description="The port of the stable and canary Services."
    )
    root_service: ShortName | None = Field(
        None,
        description="The Service the Ingress rule names (port `use-annotation`); the action is"
        " named after it. Defaults to the stable Service.",
    )
    annotation_prefix: str = Field(
        "alb.ingress.kubernetes.io",
        max_length=253,
        description="The controller's --annotations-prefix.",
    )
    stickiness_config: StickinessConfig | None = None

    @property
    def names(self) -> list[str]:
        """Every Ingress named, `ingress` first, each once."""
        found = [self.ingress] if self.ingress else []
        return found + [i for i in self.ingresses if i not in found]


class AmbassadorRouting(ApiModel):
    """Ambassador / Emissary-ingress: for each Mapping named, a canary Mapping
    `<mapping>-canary` (a copy pointing at the canary Service, with `weight`) exists while the
    canary has a share; Ambassador sends that share of the shared prefix to it."""

    mappings: list[Name] = Field(
        ...,
        min_length=1,
        max_length=16,
        description="The Mappings (getambassador.io) routing to the stable Service; none may"
        " set a weight of its own.",
    )


class ApisixRouteRef(ApiModel):
    name: Name = Field(..., description="The ApisixRoute (apisix.apache.org/v2) to weight.")
    rules: list[ShortName] = Field(
        default_factory=list,
        max_length=16,
        description="Its http rules to manage, by name; the rule named like the route when"
        " empty (as in Argo).",
    )


class ApisixRouting(ApiModel):
    """Apache APISIX: the stable and canary backends' weights in an ApisixRoute's rules; a
    header route is an ApisixRoute of the operator's own, named after the route."""

    route: ApisixRouteRef


class AppMeshVirtualService(ApiModel):
    name: Name = Field(
        ..., description="The App Mesh VirtualService, whose provider is a VirtualRouter."
    )
    routes: list[ShortName] = Field(
        default_factory=list,
        max_length=16,
        description="The VirtualRouter's routes to weight, by name; all when empty.",
    )


class AppMeshVirtualNodeReference(ApiModel):
    name: Name


class AppMeshVirtualNodeGroup(ApiModel):
    canary_virtual_node_ref: AppMeshVirtualNodeReference = Field(
        ..., description="The VirtualNode of the canary's pods (its podSelector follows them)."
    )
    stable_virtual_node_ref: AppMeshVirtualNodeReference = Field(
        ..., description="The VirtualNode of the stable pods (its podSelector follows them)."
    )


class AppMeshRouting(ApiModel):
    """AWS App Mesh: the weights of the stable and canary VirtualNodes in the weightedTargets
    of the VirtualRouter behind `virtualService`."""

    virtual_service: AppMeshVirtualService
    virtual_node_group: AppMeshVirtualNodeGroup


class TraefikRouting(ApiModel):
    """Traefik: the stable and canary Services' weights in a TraefikService's
    `spec.weighted.services`."""

    weighted_traefik_service_name: Name = Field(
        ..., description="The TraefikService (traefik.io or traefik.containo.us) to weight."
    )


class PingPong(ApiModel):
    """Two Services that swap the stable and canary roles at each release (Argo's pingPong):
    the one that carried the canary to 100% becomes stable without its selector changing."""

    ping_service: ShortName = Field(..., description="Stable for the first release.")
    pong_service: ShortName = Field(..., description="Canary for the first release.")


StablePingPong = Literal["ping", "pong"]


def ping_pong_roles(pp: PingPong, stable: StablePingPong | None) -> tuple[str, str]:
    """(stable Service, canary Service) of a pingPong pair; `ping` is stable until the first
    release completes (status.stablePingPong unset)."""
    if stable == "pong":
        return pp.pong_service, pp.ping_service
    return pp.ping_service, pp.pong_service


class ManagedRoute(ApiModel):
    name: ShortName


# The router fields of `trafficRouting`, in the order routers are written (the first one
# written on an abort is the first that names the traffic going back to stable).
ROUTERS = [
    "gatewayAPI",
    "nginx",
    "istio",
    "smi",
    "alb",
    "ambassador",
    "apisix",
    "appMesh",
    "traefik",
]


# Argo's plugin block: the one traffic router plugin Herdsman carries out itself.
GATEWAY_API_PLUGIN = "argoproj-labs/gatewayAPI"


class GatewayAPIPluginRoute(ApiModel):
    name: Name
    use_header_routes: bool = Field(
        False, description="Whether setHeaderRoute and setMirrorRoute steps add rules here."
    )


class GatewayAPIPlugin(ApiModel):
    """The configuration of Argo's Gateway API plugin (`plugins["argoproj-labs/gatewayAPI"]`),
    carried out by the same router as `gatewayAPI`: HTTPRoutes (weights, header and mirror
    routes), GRPCRoutes and TCPRoutes (weights). TLS routes and route selectors are refused by
    name."""

    model_config = ConfigDict(extra="forbid")

    http_route: Name | None = Field(
        None, alias="httpRoute", description="One HTTPRoute (header routes go to it)."
    )
    http_routes: list[GatewayAPIPluginRoute] = Field(
        default_factory=list, alias="httpRoutes", max_length=16
    )
    grpc_route: Name | None = Field(None, alias="grpcRoute", description="One GRPCRoute.")
    grpc_routes: list[GatewayAPIPluginRoute] = Field(
        default_factory=list, alias="grpcRoutes", max_length=16
    )
    tcp_route: Name | None = Field(None, alias="tcpRoute", description="One TCPRoute.")
    tcp_routes: list[GatewayAPIPluginRoute] = Field(
        default_factory=list, alias="tcpRoutes", max_length=16
    )
    namespace: ShortName | None = Field(None, description="The routes' namespace.")
    # Where the plugin kept its header-route bookkeeping; Herdsman names its rules instead.
    config_map: Name | None = Field(None, alias="configMap")

    @property
    def grpc_names(self) -> list[str]:
        found = [self.grpc_route] if self.grpc_route else []
        return found + [r.name for r in self.grpc_routes if r.name not in found]

    @property
    def tcp_names(self) -> list[str]:
        found = [self.tcp_route] if self.tcp_route else []
        return found + [r.name for r in self.tcp_routes if r.name not in found]

    @property
    def routes(self) -> list[GatewayAPIPluginRoute]:
        """Every HTTPRoute named, `httpRoute` first (with header routes, as the plugin does)."""
        found = (
            [
                GatewayAPIPluginRoute.model_validate(
                    {"name": self.http_route, "useHeaderRoutes": True}
                )
            ]
            if self.http_route
            else []
        )
        return found + [r for r in self.http_routes if r.name != self.http_route]


class TrafficRouting(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[" + ", ".join(f"has(self.{f})" for f in ROUTERS) + "].exists(x, x)"
                " || has(self.plugins)",
                f"trafficRouting: set at least one of {', '.join(ROUTERS)}, or plugins"
                f"[{GATEWAY_API_PLUGIN}]",
            ),
            # Argo's rule: only nginx (of the routers Herdsman has) takes a weight total.
            # Herdsman also refuses nginx beside another router then: the others weigh in
            # percent, and one canary weight is written to all of them.
            cel(
                "!has(self.maxTrafficWeight) || (has(self.nginx) && "
                + " && ".join(f"!has(self.{f})" for f in ROUTERS if f != "nginx")
                + ")",
                "maxTrafficWeight is supported with the nginx router only (and not beside"
                " another router)",
                ".maxTrafficWeight",
            ),
            cel(
                f"!has(self.plugins) || (size(self.plugins) == 1 && self.plugins.all(k, k =="
                f" '{GATEWAY_API_PLUGIN}'))",
                f"Herdsman runs no traffic router plugins; it carries out {GATEWAY_API_PLUGIN}"
                " itself (or use the gatewayAPI field), and no other",
                ".plugins",
            ),
            cel(
                "!has(self.gatewayAPI) || !has(self.plugins)",
                f"set gatewayAPI or plugins[{GATEWAY_API_PLUGIN}], not both",
                ".plugins",
            ),
        )
    )

    max_traffic_weight: int | None = Field(
        None,
        ge=1,
        description="The total every weight is out of (setWeight, status.weights): 100 when"
        " absent. nginx only (its canary-weight-total annotation).",
    )
    gateway_api: GatewayAPIRouting | None = Field(None, alias="gatewayAPI")
    nginx: NginxRouting | None = None
    istio: IstioRouting | None = None
    smi: SMIRouting | None = None
    alb: ALBRouting | None = None
    ambassador: AmbassadorRouting | None = None
    apisix: ApisixRouting | None = None
    app_mesh: AppMeshRouting | None = None
    traefik: TraefikRouting | None = None
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=f"Argo's traffic router plugins: {GATEWAY_API_PLUGIN} only, carried out by"
        " the gatewayAPI router.",
        json_schema_extra={
            "maxProperties": 4,
            "additionalProperties": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
    )

    @property
    def gateway_api_plugin(self) -> GatewayAPIPlugin | None:
        """The gatewayAPI plugin's configuration; raises pydantic's ValidationError when it
        does not parse (validation reports that, naming the field)."""
        raw = self.plugins.get(GATEWAY_API_PLUGIN)
        return None if raw is None else GatewayAPIPlugin.model_validate(raw)

    @property
    def kinds(self) -> list[str]:
        """Every router in use (the fields set), in ROUTERS order; the CRD asks for one."""
        values = {
            "gatewayAPI": self.gateway_api or self.plugins.get(GATEWAY_API_PLUGIN),
            "nginx": self.nginx,
            "istio": self.istio,
            "smi": self.smi,
            "alb": self.alb,
            "ambassador": self.ambassador,
            "apisix": self.apisix,
            "appMesh": self.app_mesh,
            "traefik": self.traefik,
        }
        return [k for k in ROUTERS if values[k] is not None]

    @property
    def max_weight(self) -> int:
        """The total weights are out of (Argo's maxTrafficWeight, default 100)."""
        return self.max_traffic_weight or 100

    @property
    def kind(self) -> str:
        """The routers in use, as a person reads them: `nginx`, `nginx+smi`."""
        kinds = self.kinds
        if not kinds:
            raise ValueError("trafficRouting: no router set")
        return "+".join(kinds)

    managed_routes: list[ManagedRoute] = Field(
        default_factory=list,
        max_length=16,
        description="Header and mirror routes the steps may set, in precedence order.",
    )
