"""Run layer: run specs (:mod:`.config`), grid expansion (:mod:`.grid`), one cell's phases
(:mod:`.cell`), the runner (:mod:`.runner`), result files (:mod:`.results`, :mod:`.atomic`)
and their provenance (:mod:`.provenance`)."""
