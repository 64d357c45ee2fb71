"""Timing layer: timing models (:mod:`.models`: analytic, replay, live), recorded latency
profiles (:mod:`.profiles`) and their live recording (:mod:`.recording`)."""
