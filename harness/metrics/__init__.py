"""Per-cell metrics: strategy-stealing scores and defense costs (:mod:`.scoring`), the
attack-agnostic leakage (:mod:`.leakage`, on the densities of :mod:`.density`) and the
statistics summaries share (:mod:`.stats`)."""
