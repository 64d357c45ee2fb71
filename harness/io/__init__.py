"""General utilities at the bottom of the layers: what every layer above may use.

Atomic writes (:mod:`.atomic`), content digests of results (:mod:`.integrity`), result and
replica files read and checked (:mod:`.results`) against their JSON Schemas
(:mod:`.schema`), values made JSON-safe (:mod:`.jsonable`), provenance (:mod:`.provenance`),
per-cell claims (:mod:`.claims`) and the optional server-side secret (:mod:`.secret`).
"""
