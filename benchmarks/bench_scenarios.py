"""Every scenario by name, and which of them ``--scenario all`` runs.

Adding a scenario means subclassing :class:`bench_base.Scenario` in a module of its family and
listing the class here.
"""

from __future__ import annotations

from bench_base import Scenario
from bench_copy import CopyScenario
from bench_faults import FaultsScenario
from bench_pull import LargeScenario, ManyScenario, SharedScenario, WanScenario
from bench_push import PushScenario

SCENARIOS: dict[str, type[Scenario]] = {
    scenario.name: scenario
    for scenario in (
        SharedScenario,
        ManyScenario,
        LargeScenario,
        WanScenario,
        FaultsScenario,
        PushScenario,
        CopyScenario,
    )
}
"""Every scenario by name, in the order they run when several are chosen."""

DEFAULT_SCENARIOS = ("shared", "many", "large", "wan", "faults", "push")
"""What ``all`` runs. ``copy`` is chosen by name (``--scenario all,copy``): it takes several
minutes, skopeo copying 100 images twice per round and tool."""
