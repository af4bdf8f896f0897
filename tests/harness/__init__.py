"""Shared test fixtures' machinery: the real cluster, the operator process, Prometheus."""
