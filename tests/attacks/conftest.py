"""Attack tests use the kit's trained tiny victim and oracle (harness.testing.plugin)."""

from __future__ import annotations

FAST = {"epochs": 3, "finetune_epochs": 2, "architecture_params": {"width": 8}, "batch_size": 64}
"""Attack parameters that keep one steal() well under a second or two."""
