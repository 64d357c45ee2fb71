"""The undefended baseline: every stage is the identity."""

from __future__ import annotations

from harness.stages import Defense


class NoDefense(Defense):
    """No defense: the victim's exits, outputs and latencies reach the client unchanged."""

    name = "none"

    def __init__(self) -> None:
        pass
