#!/usr/bin/env bash
# The local control plane: real kube-apiserver, etcd, controller-manager and scheduler built from
# the official Go modules (build.sh), with KWOK faking the nodes so pods become Running and Ready.
#
#   cluster.sh up      start (or reuse) the cluster; kubeconfig -> .cluster/kubeconfig
#   cluster.sh down    stop every process it started and forget the cluster
#   cluster.sh status  exit 0 when the API server answers
#
# CLUSTER=kind uses kind instead (needs Docker); the kubeconfig lands in the same place.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="${HERDSMAN_CLUSTER_DIR:-$root/.cluster}"
name="${HERDSMAN_CLUSTER_NAME:-herdsman}"
nodes="${HERDSMAN_NODES:-3}"
kubeconfig="$state/kubeconfig"
export KWOK_WORKDIR="$state/kwok"
mode="${CLUSTER:-kwok}"

log() { echo "[cluster] $*" >&2; }

# The control plane outlives this script: it must not keep the caller's open files (a test
# runner's output pipes, a `flock` lock held for the duration of one command) open for ever.
close_inherited_fds() {
  local fd
  for fd in $(ls /proc/$BASHPID/fd 2>/dev/null); do
    [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true
  done
}

bin_dir() { "$here/build.sh"; }

api_ready() {
  local kubectl="$1"
  [ -f "$kubeconfig" ] && "$kubectl" --kubeconfig "$kubeconfig" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

# kubectl keeps what an API server serves (discovery) on disk for hours, keyed by the server's
# address, and every fresh cluster reuses the same address. A cache left by an earlier cluster
# (say one a test installed Argo Rollouts' CRDs into) would send `kubectl get rollouts` to
# rollouts.argoproj.io, which this one does not serve: a fresh cluster starts with none.
forget_discovery() {
  local server dir
  server=$("$1" --kubeconfig "$kubeconfig" config view --minify \
    -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null) || return 0
  [ -n "$server" ] || return 0
  dir="${server#*://}"
  rm -rf "${KUBECACHEDIR:-$HOME/.kube/cache}/discovery/${dir//:/_}"
}

up_kwok() {
  local bin; bin="$(bin_dir)"
  if api_ready "$bin/kubectl"; then
    log "reusing the running cluster ($kubeconfig)"
  else
    # A stale cluster directory (machine rebooted, processes gone) is removed, not resumed:
    # a fresh etcd is cheaper than reasoning about half-dead state.
    "$bin/kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || true
    mkdir -p "$state"
    log "starting kube-apiserver, etcd, controller-manager, scheduler and kwok from $bin"
    ( close_inherited_fds
    # kwok-stages.yaml: KWOK's default stages plus one that fails Job pods on request.
    "$bin/kwokctl" --config "$here/kwok-stages.yaml" create cluster --name "$name" --runtime binary \
      --kube-apiserver-binary "$bin/kube-apiserver" \
      --kube-controller-manager-binary "$bin/kube-controller-manager" \
      --kube-scheduler-binary "$bin/kube-scheduler" \
      --etcd-binary "$bin/etcd" \
      --kwok-controller-binary "$bin/kwok" \
      --disable-qps-limits \
      --kubeconfig "$kubeconfig" --wait 90s >"$state/kwokctl.log" 2>&1 ) \
      || { cat "$state/kwokctl.log" >&2; exit 1; }
    forget_discovery "$bin/kubectl"
  fi
  local have
  have=$("$bin/kubectl" --kubeconfig "$kubeconfig" get nodes --no-headers 2>/dev/null | wc -l)
  if [ "$have" -lt "$nodes" ]; then
    "$bin/kwokctl" scale node --name "$name" --replicas "$nodes" >>"$state/kwokctl.log" 2>&1
  fi
  "$bin/kubectl" --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout=60s >/dev/null
  # The default ServiceAccount appears asynchronously; pods in a new namespace need it.
  for _ in $(seq 1 100); do
    "$bin/kubectl" --kubeconfig "$kubeconfig" -n default get serviceaccount default >/dev/null 2>&1 && break
    sleep 0.1
  done
  log "ready: $nodes KWOK nodes, kubeconfig $kubeconfig"
}

down_kwok() {
  local bin="${HERDSMAN_CACHE:-$HOME/.cache/herdsman}"
  local kwokctl
  kwokctl="$(ls "$bin"/k8s-v*/bin/kwokctl 2>/dev/null | head -n1 || true)"
  if [ -n "$kwokctl" ] && [ -d "$KWOK_WORKDIR/clusters/$name" ]; then
    "$kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || true
  fi
  # kwokctl records the pids it started; make sure none survive a failed delete.
  if [ -d "$KWOK_WORKDIR/clusters/$name/pids" ]; then
    for pidfile in "$KWOK_WORKDIR/clusters/$name"/pids/*.pid; do
      [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
  fi
  rm -rf "$KWOK_WORKDIR/clusters/$name" "$kubeconfig"
  log "stopped"
}

up_kind() {
  command -v kind >/dev/null || { log "CLUSTER=kind needs the kind binary (go install sigs.k8s.io/kind@latest) and Docker"; exit 1; }
  mkdir -p "$state"
  if ! kind get clusters 2>/dev/null | grep -qx "$name"; then
    source "$here/versions.env"
    kind create cluster --name "$name" --image "kindest/node:v${K8S_VERSION}" --kubeconfig "$kubeconfig" --wait 120s
  else
    kind get kubeconfig --name "$name" >"$kubeconfig"
  fi
  log "ready: kind cluster $name, kubeconfig $kubeconfig"
}

down_kind() {
  command -v kind >/dev/null && kind delete cluster --name "$name" || true
  rm -f "$kubeconfig"
}

case "${1:-up}:$mode" in
  up:kwok) up_kwok ;;
  down:kwok) down_kwok ;;
  up:kind) up_kind ;;
  down:kind) down_kind ;;
  status:*) api_ready "$(bin_dir)/kubectl" ;;
  *) echo "usage: CLUSTER=kwok|kind $0 up|down|status" >&2; exit 2 ;;
esac
