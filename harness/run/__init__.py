"""``harness run``: run keys (:mod:`.config`), grid expansion and config hashes
(:mod:`.grid`), the runner and its executors (:mod:`.runner`, :mod:`.executors`), and
each victim's replica agreement (:mod:`.replicas`)."""
