"""Isolation of the three roles of a cell: evaluator, server and client (DESIGN section 4).

- :mod:`~harness.isolation.wire`: the pickle-free message format between processes.
- :mod:`~harness.isolation.sandbox`: clean, parent-tied, unprivileged worker processes.
- :mod:`~harness.isolation.server_worker`: the victim and its defense in a worker.
- :mod:`~harness.isolation.client_worker`: the attack and its oracle client in a worker.
- :mod:`~harness.isolation.broker`: the evaluator answering the client with the real oracle.
- :mod:`~harness.isolation.stolen`: stolen models as data, rebuilt through the registry.
- :mod:`~harness.isolation.secret`: ``HARNESS_SECRET`` and the salt of the server's streams.
- :mod:`~harness.isolation.evaluator`: a cell run with all of the above.
"""
