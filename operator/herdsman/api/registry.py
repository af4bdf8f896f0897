"""The list of CRDs Herdsman serves, with their printer columns and subresources.

A new kind is one entry here plus its models; `make crds` does the rest.
"""

from __future__ import annotations

from herdsman.api.analysis import AnalysisTemplateSpec
from herdsman.api.analysis_run import AnalysisRunSpec, AnalysisRunStatus
from herdsman.api.crd import AGE, CrdSpec, PrinterColumn
from herdsman.api.experiment import ExperimentSpec, ExperimentStatus
from herdsman.api.rollout import RolloutSpec, RolloutStatus
from herdsman.naming import MAX_ROLLOUT_NAME  # room for the longest name derived from it

ROLLOUT = CrdSpec(
    kind="Rollout",
    plural="rollouts",
    spec_model=RolloutSpec,
    status_model=RolloutStatus,
    short_names=("ro", "hro"),
    scale=True,
    max_name_length=MAX_ROLLOUT_NAME,
    description="A service whose every version is an immutable server group, moved to step by step.",
    printer_columns=(
        PrinterColumn("Desired", ".spec.replicas", "integer"),
        PrinterColumn("Available", ".status.availableReplicas", "integer"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Step", ".status.step"),
        PrinterColumn("Weight", ".status.canaryWeight", "integer"),
        PrinterColumn("Stable", ".status.stableServerGroup"),
        PrinterColumn("Canary", ".status.canaryServerGroup"),
        AGE,
        PrinterColumn("Message", ".status.message", priority=1),
    ),
)

ALL: list[CrdSpec] = [ROLLOUT]

ANALYSIS_TEMPLATE = CrdSpec(
    kind="AnalysisTemplate",
    plural="analysistemplates",
    spec_model=AnalysisTemplateSpec,
    status_model=None,
    short_names=("at", "hat"),
    description="Metrics to measure during a rollout, and what counts as good.",
    printer_columns=(AGE,),
)

CLUSTER_ANALYSIS_TEMPLATE = CrdSpec(
    kind="ClusterAnalysisTemplate",
    plural="clusteranalysistemplates",
    spec_model=AnalysisTemplateSpec,
    status_model=None,
    scope="Cluster",
    short_names=("cat", "hcat"),
    description="An AnalysisTemplate every namespace can use.",
    printer_columns=(AGE,),
)

ANALYSIS_RUN = CrdSpec(
    kind="AnalysisRun",
    plural="analysisruns",
    spec_model=AnalysisRunSpec,
    status_model=AnalysisRunStatus,
    short_names=("ar", "har"),
    description="The measurements of one rollout revision against merged analysis templates.",
    printer_columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Metrics", ".status.summary"),
        PrinterColumn("Score", ".status.score.score", "number"),
        PrinterColumn("Rollout", ".spec.context.rollout", priority=1),
        PrinterColumn("Revision", ".spec.context.revision", "integer", priority=1),
        AGE,
        PrinterColumn("Message", ".status.message", priority=1),
    ),
)

ALL += [ANALYSIS_TEMPLATE, CLUSTER_ANALYSIS_TEMPLATE, ANALYSIS_RUN]

EXPERIMENT = CrdSpec(
    kind="Experiment",
    plural="experiments",
    spec_model=ExperimentSpec,
    status_model=ExperimentStatus,
    short_names=("exp", "hexp"),
    description="ReplicaSets from named pod templates, run for a while with analyses, and a verdict.",
    printer_columns=(
        PrinterColumn("Status", ".status.phase"),
        PrinterColumn("Duration", ".spec.duration", priority=1),
        PrinterColumn("Available", ".status.availableAt", "date", priority=1),
        AGE,
        PrinterColumn("Message", ".status.message", priority=1),
    ),
)

ALL += [EXPERIMENT]
