#!/usr/bin/env bash
# The Herdsman demo: a local cluster, the operator, one rollout that progresses step by step to
# completion, and one that is aborted to show the way back. Run it with `make demo`.
#
# Stops the operator it starts; stops the cluster too if it started it (KEEP_CLUSTER=1 keeps it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export KUBECONFIG="${KUBECONFIG:-$root/.cluster/kubeconfig}"
bin="$(tests/cluster/build.sh)"
export PATH="$root/.venv/bin:$bin:$PATH"
ns=herdsman-demo
log="$root/.cluster/demo-operator.log"

say() { printf '\n\033[1;36m==> %s\033[0m\n' "$*"; }
plugin() { kubectl herdsman -n "$ns" "$@"; }
phase() { kubectl -n "$ns" get rollout checkout -o jsonpath='{.status.phase} {.status.step} {.status.stableServerGroup}'; }
wait_for() {  # wait_for "<phase> <step> <stable>" prefix, seconds
  local want="$1" limit="${2:-90}" i=0
  until [[ "$(phase)" == "$want"* ]]; do
    i=$((i + 1)); [ "$i" -le $((limit * 5)) ] || { echo "timed out waiting for: $want (now: $(phase))"; exit 1; }
    sleep 0.2
  done
}

started_cluster=0
if ! tests/cluster/cluster.sh status 2>/dev/null; then
  say "Starting a local control plane (kube-apiserver, etcd, controller-manager, scheduler, KWOK nodes)"
  tests/cluster/cluster.sh up
  started_cluster=1
fi
cleanup() {
  [ -n "${op_pid:-}" ] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null || true
  [ -n "${tail_pid:-}" ] && kill "$tail_pid" 2>/dev/null || true
  if [ "$started_cluster" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    say "Stopping the local control plane (KEEP_CLUSTER=1 keeps it)"
    tests/cluster/cluster.sh down
  fi
}
trap cleanup EXIT

say "Installing the CRDs"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd -l app.kubernetes.io/part-of=herdsman --timeout=60s >/dev/null
kubectl get ns "$ns" >/dev/null 2>&1 && kubectl delete ns "$ns" --wait=true >/dev/null
kubectl create ns "$ns" >/dev/null

say "Running the operator (its log: one line per transition)"
: >"$log"
python -m herdsman run --standalone --namespace "$ns" >"$log" 2>&1 &
op_pid=$!
tail -n +1 -f "$log" | sed 's/^/    [operator] /' &
tail_pid=$!
sleep 2

say "Applying examples/rollout.yaml: the first revision becomes stable directly"
kubectl -n "$ns" apply -f examples/rollout.yaml
wait_for "Healthy"
plugin status checkout

say "Changing the image: revision 2 starts as a canary beside the stable group"
plugin set image checkout app=registry.k8s.io/pause:3.10
wait_for "Paused 2/4"
plugin status checkout
wait_for "Paused 4/4"
say "At 50% the rollout waits for a person: promoting"
plugin status checkout
plugin promote checkout
wait_for "Healthy 4/4 checkout-v002"
plugin status checkout
kubectl -n "$ns" get rollouts,replicasets

say "Revision 3, and then second thoughts: aborting sends all traffic back to revision 2"
plugin set image checkout app=registry.k8s.io/pause:3.10.1
wait_for "Paused 2/4"
plugin abort checkout
wait_for "Degraded"
sleep 1
plugin status checkout
kubectl -n "$ns" get rollouts,replicasets

say "Done. The transitions, as the operator logged them:"
grep -E ' rev=' "$log" | sed 's/^/    /'
