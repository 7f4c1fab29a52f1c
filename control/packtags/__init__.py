"""PackTags (PackML, OPC 30050) served over OPC UA by the controller, for SCADA; docs/packtags.md.

asyncua loads only when the server is built (``control.packtags.server``).
"""

from __future__ import annotations

from control.packtags.commands import SCADA_USER, Request, mode_request, state_request
from control.packtags.model import Snapshot, Snapshotter, StateClock, UnitView

__all__ = ["SCADA_USER", "Request", "Snapshot", "Snapshotter", "StateClock", "UnitView", "mode_request", "state_request"]
