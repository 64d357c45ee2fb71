"""Network jitter a remote client adds to every response (``timing.network=none|lan|wan``).

A remote attacker does not see the server's latency alone: each query also waits one
network round trip, which varies from query to query. :func:`add_network_delay` adds
one seeded round-trip time per query, drawn from a profile fitted to published
measurements, so the in-process path and :class:`~harness.serving.http.client.HttpOracle`
can both evaluate a remote attacker on the same model.

Each profile draws ``RTT = median * exp(sigma * Z)`` (log-normal bulk fitted to the
published median and a published upper quantile) and, with probability ``tail_prob``,
multiplies it by a Pareto(``tail_alpha``) factor (rare congestion spikes):

- ``lan``: intra-data-centre round trips measured by Pingmesh (Guo et al., *Pingmesh: A
  Large-Scale System for Data Center Network Latency Measurement and Analysis*, SIGCOMM
  2015): median about 216 microseconds and 99th percentile about 1.26 ms between
  servers of one data centre. ``sigma = ln(1.26 / 0.216) / 2.326 = 0.76`` puts the
  log-normal's 99th percentile there; a 0.5% Pareto(2.5) tail stands for the rare
  multi-millisecond spikes the paper reports.
- ``wan``: a consumer client on the Internet. The FCC's *Measuring Broadband America*
  report measured an average round trip of 34.9 ms to the nearest test server across
  terrestrial technologies at peak hours (fibre 24 ms, cable 32 ms, DSL 49 ms); the
  median is set to 35 ms. The spread of one path's round trips is not in that report:
  ``sigma = 0.25`` (99th percentile about 1.8x the median) and a 1% Pareto(1.5) tail
  (bufferbloat-like spikes of hundreds of ms) are this module's assumptions, chosen
  heavier than ``lan`` as wide-area paths are.
- ``none``: no delay (a client on the same host, or the in-process oracle).

The delay is independent of the query, so it carries no information about the exit:
it only hides the exits' latency differences under noise, as a real network does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError


@dataclass(frozen=True)
class NetworkProfile:
    """One round-trip-time distribution: log-normal bulk plus a rare Pareto tail."""

    name: str
    median_s: float
    sigma: float
    tail_prob: float
    tail_alpha: float
    source: str

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` round-trip times in seconds (zeros for a profile with no delay)."""
        if self.median_s == 0.0:
            return np.zeros(n)
        rtt = self.median_s * np.exp(self.sigma * rng.standard_normal(n))
        spikes = rng.random(n) < self.tail_prob
        # Pareto(alpha) factor >= 1 (numpy's pareto is the Lomax, shifted by one).
        factor = 1.0 + rng.pareto(self.tail_alpha, n)
        return np.where(spikes, rtt * factor, rtt)


NETWORK_PROFILES: dict[str, NetworkProfile] = {
    "none": NetworkProfile("none", 0.0, 0.0, 0.0, 1.0, "no network between client and server"),
    "lan": NetworkProfile("lan", 216e-6, 0.76, 0.005, 2.5,
                          "Pingmesh (Guo et al., SIGCOMM 2015): intra-DC RTT p50 216 us, "
                          "p99 1.26 ms"),
    "wan": NetworkProfile("wan", 35e-3, 0.25, 0.01, 1.5,
                          "FCC Measuring Broadband America: mean RTT 34.9 ms (terrestrial, "
                          "peak); spread and tail assumed"),
}
"""The profiles ``timing.network=`` accepts, by name."""


def network_profile(name: str) -> NetworkProfile:
    """The profile called ``name``; an unknown name lists the allowed ones."""
    try:
        return NETWORK_PROFILES[name]
    except KeyError:
        raise ConfigError(f"timing.network={name!r} is not allowed; choose one of "
                          f"{', '.join(NETWORK_PROFILES)}") from None


def add_network_delay(latency_s: np.ndarray, profile: NetworkProfile | str,
                      rng: np.random.Generator) -> np.ndarray:
    """``latency_s`` plus one seeded round trip per query (NaN latencies stay NaN).

    Refused queries (NaN latency) keep NaN; the generator advances by the same amount
    whatever the values, so a seed gives the same delays for the same number of queries.
    """
    prof = network_profile(profile) if isinstance(profile, str) else profile
    latency = np.asarray(latency_s, dtype=np.float64)
    return latency + prof.sample(latency.size, rng).reshape(latency.shape)
