"""The neutral model kit victims and attacks share: building blocks (:mod:`.blocks`), exit
placement (:mod:`.exits`), the seeded training loop (:mod:`.training`) and threshold helpers
(:mod:`.thresholds`)."""
