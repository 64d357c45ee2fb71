"""One cell: its spec, its server, its attacker, and the one driver that runs it.

- :mod:`~harness.cell.spec`: what determines a cell (components, seed, settings).
- :mod:`~harness.cell.driver`: the three phases and their seams, written once.
- :mod:`~harness.cell.roles`: the server and attacker handles the driver sees.
- :mod:`~harness.cell.local`: ``isolation=none``, both roles in this process.
- :mod:`~harness.cell.server`, :mod:`~harness.cell.benign`: the server side and the benign
  clients in the attack's stream.
- :mod:`~harness.cell.attacker`, :mod:`~harness.cell.pool`, :mod:`~harness.cell.stolen`: the
  attacker's request, its pool, its result as data.
"""
