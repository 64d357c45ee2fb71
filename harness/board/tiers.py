"""Tiers of defenses: which ranks the seeds can actually tell apart.

A rank orders defenses by a mean over a few seeds; two defenses whose worst cases differ
by less than the seed noise would swap places on other seeds. The board therefore says
what it knows (docs/design.md section 7):

- **Per-seed worst case.** For each seed, a defense's worst case is the highest exit
  agreement any of its real attacks reached on that seed. Only seeds on which every one
  of its scored real attacks finished count (a missing attack could be that seed's worst).
- **Tiers.** In rank order, the first defense without a tier opens the next one; every
  later defense without a tier that cannot be told apart from that first member joins it.
  Two defenses are told apart when the 95% t-interval of their paired per-seed worst-case
  difference (on the seeds both have) excludes 0; with fewer than two shared seeds they
  cannot be, so one seed puts every defense in one tier.
- **No better than ``none``.** A defense is flagged when the same paired interval against
  the undefended victim does not lie wholly below 0: the seeds do not show that it lowers
  the worst case at all.
"""

from __future__ import annotations

from typing import Any

from harness.metrics.stats import mean_ci, paired_difference


def seed_worst_cases(real: list[dict[str, Any]],
                     metric: str = "exit_agreement") -> dict[int, float]:
    """Seed -> the highest ``metric`` over the real attack groups ``real`` on that seed,
    over the seeds on which every one of them has a value."""
    per_attack = [{c["seed"]: c["metrics"].get(metric) for c in r["_cells"]} for r in real]
    if not per_attack:
        return {}
    seeds = set.intersection(*({s for s, v in values.items() if v is not None}
                               for values in per_attack))
    return {s: max(values[s] for values in per_attack) for s in sorted(seeds)}


def told_apart(difference: dict[str, Any]) -> bool:
    """Whether a paired difference's 95% interval excludes 0."""
    lo, hi = difference["ci95"]
    return lo is not None and hi is not None and (lo > 0 or hi < 0)


def assign_tiers(entries: list[dict[str, Any]], worst: dict[str, dict[int, float]]) -> None:
    """Add ``seed_worst`` (mean and interval of the per-seed worst case), ``tier``,
    ``tier_leader``, ``vs_tier_leader``, ``vs_none`` and ``no_better_than_none`` to the
    entries of one scenario, in place. ``entries`` are in rank order; ``worst`` maps each
    entry's ``defense_id`` to its per-seed worst cases. Only ranked entries get a tier."""
    none = next((e for e in entries if e["defense_name"] == "none"
                 and e["defense_id"] in worst), None)
    for e in entries:
        mine = worst.get(e["defense_id"], {})
        e["seed_worst"] = mean_ci(mine.values())
        e["tier"] = e["tier_leader"] = e["vs_tier_leader"] = None
        if none is None or e is none:
            e["vs_none"] = None
            e["no_better_than_none"] = None
        else:
            e["vs_none"] = paired_difference(mine, worst[none["defense_id"]])
            hi = e["vs_none"]["ci95"][1]
            e["no_better_than_none"] = hi is None or hi >= 0
    tier = 0
    for leader in (e for e in entries if e["status"] == "ranked"):
        if leader["tier"] is not None:
            continue
        tier += 1
        leader["tier"], leader["tier_leader"] = tier, leader["defense"]
        for other in entries:
            if other["status"] != "ranked" or other["tier"] is not None:
                continue
            diff = paired_difference(worst.get(other["defense_id"], {}), worst.get(leader["defense_id"], {}))
            if not told_apart(diff):
                other["tier"], other["tier_leader"] = tier, leader["defense"]
                other["vs_tier_leader"] = diff
