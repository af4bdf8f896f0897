{{/*
What the operator does, as RBAC rules: nothing more. tests/unit/test_chart_rbac.py derives the
same list from the code (every call through Kube/Rest with its Path constant, plus the Kopf
handlers and Kopf's own peering and scanning) and fails when the two differ in either direction.
*/}}

{{/* Namespaced resources: in a ClusterRole when cluster-wide, in a Role per watched namespace. */}}
{{- define "herdsman.rules.namespaced" -}}
# Rollouts: watched by Kopf, read by each reconcile; only the status is written — and, sharded
# only, the herdsman.dev/shard label that records a Rollout's shard (the spec is the user's).
- apiGroups: [herdsman.dev]
  resources: [rollouts]
  verbs: [get, list, {{ if include "herdsman.sharded" . }}patch, {{ end }}watch]
- apiGroups: [herdsman.dev]
  resources: [rollouts/status]
  verbs: [patch]
# AnalysisRuns: created per step, measured and terminated by the rollout's reconcile.
- apiGroups: [herdsman.dev]
  resources: [analysisruns]
  verbs: [create, delete, list, patch, watch]
- apiGroups: [herdsman.dev]
  resources: [analysisruns/status]
  verbs: [patch]
- apiGroups: [herdsman.dev]
  resources: [analysistemplates]
  verbs: [get, list, watch]
# Experiments: started and terminated by a Rollout's experiment step, each run by its own loop
# (watched by Kopf, read each pass; only the status is written by that loop).
- apiGroups: [herdsman.dev]
  resources: [experiments]
  verbs: [create, get, list, patch, watch]
- apiGroups: [herdsman.dev]
  resources: [experiments/status]
  verbs: [patch]
# Jobs: the Job analysis provider's measurements, owned by their AnalysisRun, deleted when it ends.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [create, delete, get, list]
# Server groups: one ReplicaSet per revision, scaled and retired by the operator.
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [create, delete, list, patch, watch]
# Deployments named by spec.workloadRef: read (and watched) for their pod template, and
# scaled through the scale subresource per workloadRef.scaleDown; never otherwise changed.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# Services: the operator moves their selectors between server groups, and creates the one an
# experiment template asks for.
- apiGroups: [""]
  resources: [services]
  verbs: [create, get, list, patch, watch]
# Pods: listed and deleted for `kubectl herdsman restart`; patched (labels and annotations
# only) to move ephemeral role metadata (canaryMetadata, stableMetadata...) between groups.
- apiGroups: [""]
  resources: [pods]
  verbs: [delete, list, patch]
# Secrets: one key read by name when an analysis provider references it, and the
# notifications Secret by name; never listed.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# The notifications ConfigMap (services and templates), read by name.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
# One Event per transition; the dashboard lists and watches them for its timelines.
- apiGroups: [""]
  resources: [events]
  verbs: [create, list, watch]
# Traffic routers (operator/herdsman/traffic/): the route objects a Rollout names, whose weights
# the operator sets; the NGINX canary Ingress, the SMI TrafficSplit, the Ambassador canary
# Mappings and the APISIX header-route ApisixRoutes are the operator's own.
# Templates, Services and router objects are read by name on every pass: listed and watched
# once one has been read, so that those reads come from a watch (cluster/reads.py).
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes, grpcroutes, tcproutes]
  verbs: [get, list, patch, watch]
- apiGroups: [networking.istio.io]
  resources: [virtualservices, destinationrules]
  verbs: [get, list, patch, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [create, delete, get, list, patch, watch]
- apiGroups: [split.smi-spec.io]
  resources: [trafficsplits]
  verbs: [create, get, list, patch, watch]
- apiGroups: [getambassador.io]
  resources: [mappings]
  verbs: [create, delete, get, list, patch, watch]
- apiGroups: [apisix.apache.org]
  resources: [apisixroutes]
  verbs: [create, delete, get, list, patch, watch]
- apiGroups: [appmesh.k8s.aws]
  resources: [virtualservices]
  verbs: [get, list, watch]
- apiGroups: [appmesh.k8s.aws]
  resources: [virtualrouters, virtualnodes]
  verbs: [get, list, patch, watch]
- apiGroups: [traefik.io, traefik.containo.us]
  resources: [traefikservices]
  verbs: [get, list, patch, watch]
{{- end -}}

{{/* Cluster-scoped resources, in both modes. */}}
{{- define "herdsman.rules.cluster" -}}
- apiGroups: [herdsman.dev]
  resources: [clusteranalysistemplates]
  verbs: [get, list, watch]
# Kopf notices CRDs installed after it started (the peering CRD it waits for with --require-peering).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end -}}

{{/* Kopf peering: keep-alives in the status of the peering object, watched by every replica. */}}
{{- define "herdsman.rules.clusterPeering" -}}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, patch, watch]
{{- end -}}

{{- define "herdsman.rules.namespacedPeering" -}}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, patch, watch]
{{- end -}}

{{/* Sharding: the shard and member Leases, in the release's namespace only. */}}
{{- define "herdsman.rules.leases" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create, delete, list, update]
{{- end -}}

{{/* A namespace-limited Kopf lists and watches namespaces to serve the listed ones as they come and go. */}}
{{- define "herdsman.rules.namespaces" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end -}}
