"""The evaluator's secret and the salt of the server's streams.

Three modes (``secret=`` and ``HARNESS_SECRET``; recorded in every result and its config
hash): ``folder`` (the default: each results folder gets its own random secret, in
``<out>/.harness-secret``, readable by the evaluator's user only and never by a worker),
``secret`` (a named secret in ``HARNESS_SECRET``: shareable, so bit-exact reproduction
works across machines), ``public`` (``secret=public``: no secret; for debugging and
bit-exact reproduction by anyone, and the victims can then be rebuilt from the public
data, recipe and seed by any plugin). :func:`run_secret` sets the run's secret up.

The cell seed is known to the attack, so the server's random streams (defense draws,
modelled timing noise) must not be derivable from it. They are salted with
``sha256(secret | victim weights hash)``:

- **public mode** (no secret): the salt comes from the victim's weights hash, which
  an isolated attack never sees; results stay reproducible on any machine. A plugin
  that rebuilds the victim from the public data and recipe could still derive it.
- **secret and folder modes**: the victims' training seeds and the split permutation are salted too
  (:func:`victim_salt`, through ``VictimContext.salted_seed`` and a dataset's
  ``split_seed``), so the exact victim cannot be rebuilt from public data and recipes.
  The secret is read by the evaluator only and never passed to a
  worker (workers fork from a server started without it), so nobody without the
  secret can predict a defense's draws. Results record which mode produced them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import ConfigError
from harness.io.atomic import create_private_once

ENV_VAR = "HARNESS_SECRET"


MODE_VAR = "HARNESS_SECRET_MODE"
FOLDER_FILE = ".harness-secret"
MODES = ("folder", "public")
"""Values of the ``secret=`` key (a named secret comes from ``HARNESS_SECRET``)."""


def secret_mode() -> str:
    """``folder`` or ``secret`` (named) when a secret is set, else ``public``."""
    if not os.environ.get(ENV_VAR):
        return "public"
    return "folder" if os.environ.get(MODE_VAR) == "folder" else "secret"


def folder_secret(out: Path) -> str:
    """The results folder's own secret: read, or created once (random, mode 0600, never
    replaced: two runners racing on one folder agree on the first one written)."""
    path = create_private_once(Path(out) / FOLDER_FILE, (secrets.token_hex(32) + "\n").encode())
    text = path.read_text().strip()
    if len(text) < 32:
        raise ConfigError(f"{path} holds no usable secret ({len(text)} characters); delete it "
                          "to have a new one made (the folder's finished cells then run again)")
    return text


@contextmanager
def run_secret(out: Path, key: str) -> Iterator[str]:
    """The run's secret mode, set up for the duration of a run: a named ``HARNESS_SECRET``
    wins; else ``secret=public`` or the folder's own secret (``secret=folder``)."""
    if os.environ.get(ENV_VAR) or key == "public":
        yield secret_mode()
        return
    with secret_env(folder_secret(out), "folder"):
        yield "folder"


@contextmanager
def secret_env(secret: str | None, mode: str) -> Iterator[None]:
    """This process in secret ``mode`` (``public``, ``secret`` or ``folder``) with
    ``secret`` (None: public) for a block; the previous state is restored after it."""
    saved = {k: os.environ.get(k) for k in (ENV_VAR, MODE_VAR)}
    for k in saved:
        os.environ.pop(k, None)
    if secret:
        os.environ[ENV_VAR] = secret
        if mode == "folder":
            os.environ[MODE_VAR] = "folder"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fresh_secret() -> str:
    """A new random secret (verify's stand-in for a secret it does not hold)."""
    return secrets.token_hex(32)


def victim_salt() -> str:
    """The salt of victims' training seeds and split permutations ('' in public mode)."""
    secret = os.environ.get(ENV_VAR)
    return hashlib.sha256(f"victims|{secret}".encode()).hexdigest() if secret else ""


def stream_salt(victim_identity: str) -> tuple[int, ...]:
    """Four 32-bit words salting every server stream of a cell, from the secret and the
    victim's identity (its registered name and canonical parameters).

    Only what every machine computes identically goes in: never a float result such as
    the trained weights' hash, whose last bits differ across processors and would change
    every timing draw, and with them every metric, from one machine to the next."""
    secret = os.environ.get(ENV_VAR) or ""
    digest = hashlib.sha256(f"{secret}|{victim_identity}".encode()).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4))

