"""Routing: sort plan, manifest, consolidation and the numpy routing engine (docs/routing.md)."""

from control.routing.engine import Decisions, PreparedPlan, RoutingEngine
from control.routing.manifest import Manifest, ManifestIssue, load_manifest
from control.routing.plan import Rule, SortPlan, load_plan, parse_plan
from control.routing.reasons import ReadStatus, Reason
from control.routing.settings import RoutingSettings, load_settings

__all__ = [
    "Decisions",
    "Manifest",
    "ManifestIssue",
    "PreparedPlan",
    "Reason",
    "ReadStatus",
    "RoutingEngine",
    "RoutingSettings",
    "Rule",
    "SortPlan",
    "load_manifest",
    "load_plan",
    "load_settings",
    "parse_plan",
]
