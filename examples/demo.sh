#!/usr/bin/env bash
# The Herdsman demo: a release judged by its metrics and promoted on its own, then a release
# that regresses and is rolled back by the judge, with no human action. Run it with `make demo`.
#
# It starts a local control plane (unless one runs), Prometheus, `herdsman simulate` (a service
# whose traffic follows the pods of each server group) and the operator with its web dashboard.
# At the end it stops every process it started; KEEP_CLUSTER=1 leaves them all running to
# explore, and `examples/demo.sh down` stops them later.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export KUBECONFIG="${KUBECONFIG:-$root/.cluster/kubeconfig}"
bin="$(tests/cluster/build.sh)"
export PATH="$root/.venv/bin:$bin:$PATH"
ns=herdsman-demo
state="$root/.cluster/demo"
pids="$state/pids"
v1=registry.k8s.io/pause:3.9 v2=registry.k8s.io/pause:3.10 v3=registry.k8s.io/pause:3.10.1

say() { printf '\n\033[1;36m==> %s\033[0m\n' "$*"; }
plugin() { kubectl herdsman -n "$ns" "$@"; }
# The full name: where Argo Rollouts is installed too (KUBECONFIG may name any cluster), kubectl
# reads a plain `rollout` as Argo's.
phase() { kubectl -n "$ns" get rollouts.herdsman.dev checkout -o jsonpath='{.status.phase} {.status.step} {.status.stableServerGroup}'; }
wait_for() {  # wait_for "<phase> <step> <stable>" prefix, seconds
  local want="$1" limit="${2:-120}" i=0
  until [[ "$(phase)" == "$want"* ]]; do
    i=$((i + 1)); [ "$i" -le $((limit * 5)) ] || { echo "timed out waiting for: $want (now: $(phase))"; exit 1; }
    sleep 0.2
  done
}
free_port() {  # the port asked for when it is free, else any free one
  python -c 'import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "${1:-0}"
}
wait_http() {  # wait_http URL: until it answers 200 (20 s at most)
  python -c 'import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        break
    except Exception:
        time.sleep(0.2)' "$1"
}
started() { echo "$1" >>"$pids"; }

stop_all() {  # every process this demo started, then the cluster if it started it
  if [ -f "$pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$pids"
    while read -r pid; do
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done <"$pids"
    rm -f "$pids"
  fi
  if [ -f "$state/started-cluster" ]; then
    say "Stopping the local control plane"
    tests/cluster/cluster.sh down
    rm -f "$state/started-cluster"
  fi
}

if [ "${1:-}" = down ]; then stop_all; exit 0; fi
[ -f "$pids" ] && stop_all  # a previous KEEP_CLUSTER=1 run
mkdir -p "$state"

if ! tests/cluster/cluster.sh status 2>/dev/null; then
  say "Starting a local control plane (kube-apiserver, etcd, controller-manager, scheduler, KWOK nodes)"
  tests/cluster/cluster.sh up
  touch "$state/started-cluster"
fi
cleanup() {
  [ -n "${tail_pid:-}" ] && kill "$tail_pid" 2>/dev/null || true
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    say "Still running (KEEP_CLUSTER=1): stop everything with examples/demo.sh down"
  else
    say "Stopping what the demo started (KEEP_CLUSTER=1 keeps it)"
    stop_all
  fi
}
trap cleanup EXIT

say "Installing the CRDs"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd -l app.kubernetes.io/part-of=herdsman --timeout=60s >/dev/null
kubectl get ns "$ns" >/dev/null 2>&1 && kubectl delete ns "$ns" --wait=true >/dev/null
kubectl create ns "$ns" >/dev/null

sim_port=$(free_port) prom_port=$(free_port) dash_port=$(free_port "${DASHBOARD_PORT:-8082}")
say "Starting the synthetic service: release 3 ($v3) answers 30% slower and fails 5% of requests"
python -m herdsman simulate -n "$ns" --rollout checkout --port "$sim_port" \
  --behaviour "$v1=latency:0.1" --behaviour "$v2=latency:0.1" \
  --behaviour "$v3=latency:0.13,errors:0.05" >"$state/simulate.log" 2>&1 &
started $!

say "Starting Prometheus (scrapes the service every second)"
prometheus_bin="$(command -v prometheus || echo /usr/bin/prometheus)"
rm -rf "$state/prometheus" && mkdir -p "$state/prometheus"
cat >"$state/prometheus/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: checkout
    static_configs: [{targets: ["127.0.0.1:$sim_port"]}]
YAML
"$prometheus_bin" --config.file="$state/prometheus/prometheus.yml" \
  --storage.tsdb.path="$state/prometheus/data" --web.listen-address="127.0.0.1:$prom_port" \
  --log.level=warn >"$state/prometheus.log" 2>&1 &
started $!
wait_http "http://127.0.0.1:$prom_port/-/ready"

say "Running the operator with its web dashboard (its log: one line per transition)"
log="$state/operator.log"
: >"$log"
python -m herdsman run --standalone --namespace "$ns" --dashboard-port "$dash_port" \
  --dashboard-address 127.0.0.1 >"$log" 2>&1 &
started $!
# $! is tail's own pid, so the trap's kill ends grep and sed too (they read to the end); after
# a plain pipeline it would be sed's, and tail and grep outlived every demo. (No --pid: BSD
# tail, on a Mac running the demo on kind, lacks it.)
tail -n +1 -f "$log" > >(grep --line-buffered ' rev=' | sed -u 's/^/    [operator] /') &
tail_pid=$!
dashboard="http://127.0.0.1:$dash_port/"
wait_http "${dashboard}api/config"
printf '\n    Dashboard: \033[1m%s\033[0m (live: keep it open while the demo runs)\n' "$dashboard"

say "Applying examples/demo/checkout.yaml: revision 1 becomes stable directly"
sed "s#__PROMETHEUS__#http://127.0.0.1:$prom_port#" examples/demo/checkout.yaml | kubectl -n "$ns" apply -f - >/dev/null
wait_for "Healthy"
plugin status checkout

say "Release 2: a canary at 20% beside a fresh baseline of release 1, judged by latency and errors"
plugin set image checkout app="$v2"
wait_for "Progressing 2/4"
plugin status checkout
wait_for "Healthy 4/4 checkout-v002" 150
say "The judge passed release 2 and it was promoted, with nobody pressing anything"
plugin analysis --rollout checkout

say "Release 3: +30% latency and 5% errors. Watch the judge roll it back"
plugin set image checkout app="$v3"
wait_for "Degraded" 150
sleep 1
plugin status checkout
plugin analysis --rollout checkout
kubectl -n "$ns" get rollouts.herdsman.dev,replicasets

say "Done. The transitions, as the operator logged them:"
grep -E ' rev=' "$log" | sed 's/^/    /'
cat <<TEXT

Where to look:
  dashboard        $dashboard#/rollout/$ns/checkout  (the canary report: Analysis runs → a run)
  the judge        kubectl herdsman -n $ns analysis --rollout checkout
  the rollout      kubectl herdsman -n $ns status checkout
  Prometheus       http://127.0.0.1:$prom_port/
TEXT
if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
  echo "(KEEP_CLUSTER=1 make demo keeps all of it running to explore.)"
fi
