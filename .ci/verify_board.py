"""CI's check of the committed leaderboard on whatever machine CI runs on (issue 25).

Re-runs a seeded sample of 3 committed cells, stale ones included (``harness leaderboard
verify leaderboard --sample 3 --rerun-stale``), and fails CI when a re-run contradicts a
committed number or a cell cannot be re-run:

- on the board's machine class (processor and core count) the re-run must be bit-exact;
- on another class the cells are compared within the cross-machine tolerances, which are
  chosen, not yet measured across processor families (docs/leaderboard.md, "Verifying on
  another processor"): there a mismatch is printed as a warning until that measurement
  exists.

A stale cell (the code changed since the board was built) that still reproduces its
numbers passes with a notice: the board needs regenerating only when numbers move.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.board.tolerance import MachineClass
from harness.board.verify import verify_leaderboard
from harness.run.config import default_cache_dir

BOARD = Path(__file__).resolve().parents[1] / "leaderboard"
SAMPLE = 3


def board_classes() -> set[MachineClass | None]:
    """The machine classes the committed cells ran on."""
    return {MachineClass.of_result(json.loads(p.read_text()))
            for p in sorted((BOARD / "cells").rglob("*.json"))}


def main() -> int:
    here = MachineClass.here()
    classes = board_classes()
    same = classes == {here}
    print(f"verify-board: board built on {', '.join(sorted(map(str, classes)))}; "
          f"this machine {here}", flush=True)
    report = verify_leaderboard(BOARD, sample=SAMPLE, cache_dir=default_cache_dir(),
                                rerun_stale=True,
                                progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.format_report())
    stale_mismatches = [m for s in report.stale for m in s.mismatches]
    reproduced = (not report.mismatches and not stale_mismatches
                  and all(u.failed for u in report.cannot_verify)
                  and (report.verified or report.stale))
    if reproduced:
        if report.stale:
            print(f"verify-board: {len(report.stale)} stale cell(s) re-run and reproduced; "
                  "the board is older than the code but its numbers still hold")
        return 0
    if not same and all(u.failed for u in report.cannot_verify):
        print("verify-board: WARNING: numbers moved beyond the cross-machine tolerances on "
              "this processor; those tolerances are not yet measured across processor "
              "families (issue 25), so this does not fail CI", file=sys.stderr)
        return 0
    print("verify-board: FAILED: the committed leaderboard does not reproduce here",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
