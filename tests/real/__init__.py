"""Tests against real components: a distribution registry, a Docker engine, containerd, skopeo.

A package of its own so that its modules (``real.conftest``, ``real.services``, …) never clash
with same-named modules elsewhere in tests/.
"""
