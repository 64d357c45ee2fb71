"""Report layer: per-cell scores (:mod:`.scoring`), attack-agnostic leakage (:mod:`.leakage`,
:mod:`.density`), the leaderboard (:mod:`.leaderboard`) and the result schemas (:mod:`.schema`)."""
