#!/usr/bin/env bash
# Builds the local control plane once into a versioned cache and reuses it afterwards:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes, this module)
#   etcd                                                              (go.etcd.io/etcd/server/v3, this module)
#   kwok, kwokctl                                                     (sigs.k8s.io/kwok)
#   helm                                                              (helm.sh/helm/v3)
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath"

cache_root="${HERDSMAN_CACHE:-$HOME/.cache/herdsman}"
prefix="$cache_root/k8s-v${K8S_VERSION}"
bin="$prefix/bin"
# The stamp covers everything that decides the binaries: versions, the module graph, the builder.
stamp_want="$(cat "$here/versions.env" "$here/go.sum" "$here/cmd/etcd/main.go" "$0" | sha256sum | cut -c1-16) $(go env GOVERSION)"
if [ -f "$prefix/.stamp" ] && [ "$(cat "$prefix/.stamp")" = "$stamp_want" ]; then
  echo "$bin"
  exit 0
fi

log() { echo "[build] $(date +%T) $*" >&2; }
mkdir -p "$bin"
start=$(date +%s)
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=v${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date}"
done

log "kubernetes v${K8S_VERSION}: kube-apiserver kube-controller-manager kube-scheduler kubectl etcd"
(cd "$here" && go build -ldflags "-s -w ${k8s_ldflags}" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  ./cmd/etcd)

log "kwok v${KWOK_VERSION}"
GOBIN="$bin" go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v${KWOK_VERSION} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=v${K8S_VERSION}" \
  "sigs.k8s.io/kwok/cmd/kwok@v${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@v${KWOK_VERSION}"

log "helm v${HELM_VERSION}"
GOBIN="$bin" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v${HELM_VERSION}" \
  "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}"

echo "$stamp_want" > "$prefix/.stamp"
log "done in $(( $(date +%s) - start ))s -> $bin"
echo "$bin"
