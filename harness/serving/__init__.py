"""Serving layer: the server side of a cell (:mod:`.endpoint`: victim, defense stages, timing),
the attacker's only handle (:mod:`.oracle`), and device selection (:mod:`.devices`)."""
