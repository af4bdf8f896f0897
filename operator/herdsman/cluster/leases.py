"""The API server's side of sharding: our Leases, read and written as compare-and-swaps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herdsman.cluster.budget import Deadline
from herdsman.cluster.kube import Kube, KubeError, Path
from herdsman.sharding import LABEL_LEASE_GROUP, Conflict

LEASES = Path("coordination.k8s.io", "v1", "leases")


@dataclass
class KubeLeases:
    """Our Leases in the operator's namespace, through the client it is given (a small one of
    their own, so that a renewal never waits behind the reconcilers' calls).

    `replace` is a PUT carrying the resourceVersion we listed: the API server refuses it (409)
    when anyone wrote the Lease since, which is what makes taking a shard a compare-and-swap.
    """

    kube: Kube
    namespace: str
    group: str
    seconds: float = 5.0

    async def list(self) -> list[dict[str, Any]]:
        return await self.kube.list(
            LEASES.url(self.namespace),
            deadline=Deadline(self.seconds),
            labels=f"{LABEL_LEASE_GROUP}={self.group}",
        )

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self.kube.create(
                LEASES.url(self.namespace), body, deadline=Deadline(self.seconds)
            )
        except KubeError as err:
            if err.status == 409:
                raise Conflict(str(err)) from err
            raise

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self.kube.request(
                "PUT", LEASES.url(self.namespace, name), body=body, deadline=Deadline(self.seconds)
            )
        except KubeError as err:
            if err.status in (404, 409):
                raise Conflict(str(err)) from err
            raise
        return result

    async def delete(self, name: str) -> None:
        await self.kube.delete(LEASES.url(self.namespace, name), deadline=Deadline(self.seconds))
