"""Serving a victim over HTTP (``harness serve``) and the remote oracle client (``HttpOracle``).

:mod:`.wire` is the request/answer format, :mod:`.clients` the per-client oracles and
rate limits, :mod:`.app` the Starlette app, :mod:`.client` the attacker's oracle handle.
"""
