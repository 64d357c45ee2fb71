"""``isolation=process``: the server and attacker roles of a cell in sandboxed workers.

- :mod:`~harness.isolation.roles`: the roles the cell driver runs a cell with.
- :mod:`~harness.isolation.wire`: the pickle-free message format between processes.
- :mod:`~harness.isolation.sandbox`: clean, parent-tied, unprivileged worker processes.
- :mod:`~harness.isolation.server_worker`: the victim and its defense in a worker.
- :mod:`~harness.isolation.client_worker`: the attack and its oracle client in a worker.
- :mod:`~harness.isolation.broker`: the evaluator answering the client with the real oracle.
- :mod:`~harness.isolation.gateway`: ``transport=http``, the oracle behind a loopback app.
- :mod:`~harness.isolation.tripwire`: what workers changed outside the cell, undone.
"""
