"""Per-stage ONNX export of a :class:`MultiExitNet`, cached by the victim's weights hash.

Stage ``k`` maps the hidden state before block ``k`` to (hidden state after block ``k``,
logits of exit ``k``), with a dynamic batch axis, so a server can run stages one at a
time and stop at any exit. Files are written atomically (temporary file + rename) and
a ``manifest.json`` written last marks a complete export.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.io.atomic import atomic_write_bytes
from harness.model import MultiExitNet

MANIFEST = "manifest.json"
INPUT_NAME = "h_in"
OUTPUT_NAMES = ("h_out", "logits")


class _Stage(nn.Module):
    """Block ``k`` then head ``k``: the unit one ONNX file holds."""

    def __init__(self, block: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.head = head

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.block(h)
        return h, self.head(h)


def stage_file(directory: Path, k: int) -> Path:
    return directory / f"stage{k}.onnx"


def export_dir(cache_dir: Path, victim_name: str, weights_hash: str) -> Path:
    """Cache folder of one victim's stages: ``<cache_dir>/onnx/<name>-<hash>``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{victim_name}-{weights_hash}")
    return Path(cache_dir) / "onnx" / safe


def export_stage_bytes(net: MultiExitNet, k: int, example: torch.Tensor, opset: int) -> bytes:
    """ONNX bytes of stage ``k`` traced on ``example`` (legacy TorchScript exporter)."""
    buf = io.BytesIO()
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        # torch deprecates the TorchScript exporter; the dynamo one needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_Stage(net.blocks[k], net.heads[k]).eval(), (example,), buf,
                          dynamo=False, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
                          opset_version=opset)
    return buf.getvalue()


def export_stages(net: MultiExitNet, directory: Path, opset: int,
                  meta: dict[str, Any]) -> list[Path]:
    """Export every stage of ``net`` (eval mode, cpu) to ``directory``; return the paths."""
    directory = Path(directory)
    paths = []
    with torch.no_grad():
        h = torch.zeros((2, *net.input_shape), dtype=torch.float32)
        for k in range(net.num_exits):
            path = stage_file(directory, k)
            atomic_write_bytes(path, export_stage_bytes(net, k, h, opset))
            paths.append(path)
            h = net.blocks[k](h)
    manifest = {**meta, "num_exits": net.num_exits, "opset": opset,
                "torch": torch.__version__, "stages": [p.name for p in paths]}
    atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=2).encode())
    return paths


def cached_stages(directory: Path, num_exits: int, meta: dict[str, Any]) -> list[Path] | None:
    """Stage paths of a complete earlier export matching ``meta``, else None."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("num_exits") != num_exits:
        return None
    if any(manifest.get(key) != value for key, value in meta.items()):
        return None
    paths = [stage_file(Path(directory), k) for k in range(num_exits)]
    return paths if all(p.is_file() for p in paths) else None

