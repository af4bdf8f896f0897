#!/usr/bin/env bash
# Regenerates go.mod/go.sum for the control-plane build from the Kubernetes release's own go.mod:
# every `k8s.io/X => ./staging/src/k8s.io/X` replace there becomes `k8s.io/X => k8s.io/X v0.<minor>.<patch>`
# here, so the list is derived, never hand-maintained. Run after editing versions.env.
set -euo pipefail
cd "$(dirname "$0")"
# shellcheck source=versions.env
source ./versions.env
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

staging_version="v0.${K8S_VERSION#*.}"
upstream_mod=$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')

rm -f go.mod go.sum
go mod init herdsman.dev/tests/cluster >/dev/null 2>&1
go mod edit -go="$(awk '$1 == "go" {print $2; exit}' "$upstream_mod")"
go mod edit -require="k8s.io/kubernetes@v${K8S_VERSION}" -require="go.etcd.io/etcd/server/v3@v${ETCD_VERSION}"
count=0
while read -r module; do
  go mod edit -replace="${module}=${module}@${staging_version}"
  count=$((count + 1))
done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$upstream_mod")
[ "$count" -gt 20 ] || { echo "only $count staging replaces found in $upstream_mod" >&2; exit 1; }
go mod tidy
echo "go.mod: k8s.io/kubernetes v${K8S_VERSION}, ${count} staging modules pinned to ${staging_version}"
