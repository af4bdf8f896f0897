"""Herdsman: immutable server groups, step-wise traffic, and canary judgement for Kubernetes."""

__version__ = "0.1.0"
