"""The optional server-side secret (``HARNESS_SECRET``) and the salt of the server's streams.

The cell seed is known to the attack, so the server's random streams (defense draws,
modelled timing noise) must not be derivable from it. They are salted with
``sha256(secret | victim weights hash)``:

- **public mode** (no secret): the salt comes from the victim's weights hash, which
  an isolated attack never sees; results stay reproducible on any machine. A plugin
  that rebuilds the victim from the public data and recipe could still derive it.
- **secret mode**: the victims' training seeds and the split permutation are salted too
  (:func:`victim_salt`, through ``VictimContext.salted_seed`` and a dataset's
  ``split_seed``), so the exact victim cannot be rebuilt from public data and recipes.
  The secret is read by the evaluator only and never passed to a
  worker (workers fork from a server started without it), so nobody without the
  secret can predict a defense's draws. Results record which mode produced them.
"""

from __future__ import annotations

import hashlib
import os

ENV_VAR = "HARNESS_SECRET"


def secret_mode() -> str:
    """``secret`` when ``HARNESS_SECRET`` is set (non-empty), else ``public``."""
    return "secret" if os.environ.get(ENV_VAR) else "public"


def victim_salt() -> str:
    """The salt of victims' training seeds and split permutations ('' in public mode)."""
    secret = os.environ.get(ENV_VAR)
    return hashlib.sha256(f"victims|{secret}".encode()).hexdigest() if secret else ""


def stream_salt(weights_hash: str) -> tuple[int, ...]:
    """Four 32-bit words salting every server stream of a cell."""
    secret = os.environ.get(ENV_VAR) or ""
    digest = hashlib.sha256(f"{secret}|{weights_hash}".encode()).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))

