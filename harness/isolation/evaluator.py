"""A cell in three roles (DESIGN section 4): the evaluator drives, server and client serve.

The evaluator (this process) prepares the victim (the only writer of the cache),
starts one server worker for the cell (victim + defense; no attack named, no data
splits) and one client worker for the attack (oracle client + attacker pool only),
answers the client with the real oracle, rebuilds the stolen model from data and
scores it against its own copy of the victim. Benign traffic for the defense's cost
goes through the same server worker.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from harness.errors import ComponentFailure
from harness.isolation.broker import AttackClient
from harness.isolation.client_worker import ClientRequest
from harness.isolation.gateway import HttpGateway
from harness.isolation.sandbox import (
    PluginSetting,
    privileges_droppable,
    protect_evaluator,
    scratch_dir,
    worker_context,
)
from harness.isolation.secret import stream_salt
from harness.isolation.server_worker import RemoteServer, ServerRequest, VictimPayload
from harness.isolation.tripwire import Tripwire
from harness.plugins.registry import Registry
from harness.protocol import TrainedVictim
from harness.run.cell import (
    CellEnvironment,
    Theft,
    _diagnostics,
    _finish_theft,
    attack_label,
    attacker_stream,
    measure_defense,
    prepare_victim,
    score_theft,
    threat_view,
)
from harness.run.grid import CellSpec, ComponentSpec
from harness.run.pool import attacker_pool
from harness.run.server import Stream
from harness.serving.oracle import Oracle

HIDDEN_ATTACK = ComponentSpec("attack", "hidden")
"""What the server worker is told about the attack: nothing."""


def _start_server(cell: CellSpec, registry: Registry, env: CellEnvironment, device: str,
                  victim: TrainedVictim, drop: bool) -> RemoteServer:
    entry = registry.get("defense", cell.defense.name)
    label = (f"defense {cell.defense.display!r} (plugin {entry.plugin}, {entry.distribution} "
             f"{entry.version})")
    request = ServerRequest(replace(cell, attack=HIDDEN_ATTACK), replace(env), device,
                            victim.weights_hash, stream_salt(victim.weights_hash), drop,
                            PluginSetting.current(), VictimPayload.of(victim))
    return RemoteServer(request, label, f"defense:{cell.defense.name}", cell.seed)


def _client_request(cell: CellSpec, victim: TrainedVictim, device: str, drop: bool,
                    oracle_url: str | None, registry: Registry,
                    env: CellEnvironment) -> ClientRequest:
    data = victim.data
    cost_fraction = victim.model.cost_fraction
    view = threat_view(cell.threat, victim.model.num_exits, victim.family, cost_fraction)
    pool = attacker_pool(registry, cell.threat.pool, data, env.data_root, cell.victim.name)
    return ClientRequest(
        attack=cell.attack.name, params=cell.attack.params, attacker_x=pool,
        seed=cell.seed, device=device, budget=cell.budget, output=cell.output,  # type: ignore[arg-type]
        input_shape=data.input_shape, num_classes=data.num_classes, input_range=data.input_range,
        client_timed=cell.timing == "live", scratch=str(scratch_dir(drop)),
        drop_privileges=drop, plugins=PluginSetting.current(), oracle_url=oracle_url,
        network=cell.network, **view)


def _steal(cell: CellSpec, registry: Registry, server: RemoteServer, client: AttackClient,
           victim: TrainedVictim, gateway: HttpGateway | None) -> tuple[Theft, dict[str, Any]]:
    entry, label, component = attack_label(registry, cell)
    data = victim.data
    endpoint = server.endpoint(Stream.ATTACK_DEFENSE, Stream.ATTACK_TIMING, client_id="attacker")
    mixed = attacker_stream(endpoint, lambda x, cid: endpoint.respond(x, client_id=cid,
                                                                      benign=True),
                            cell, stream_salt(victim.weights_hash), data.test.x)
    oracle = Oracle(mixed, cell.budget, cell.output, data.input_shape, data.input_range,
                    allow_truth=entry.cls.reference)
    if gateway is not None:
        gateway.attach(oracle)
    outcome = client.serve(oracle, registry, label=label, component=component,
                           defense_failure=lambda: endpoint.failure)
    if endpoint.failure is not None:
        raise endpoint.failure
    theft = _finish_theft(outcome.stolen, oracle, mixed, data.num_classes, label, component)
    return theft, {"client": outcome.sandbox, "server_compute_s": endpoint.server_compute_s}


def _check_tripwire(tripwire: Tripwire, cell: CellSpec, registry: Registry) -> None:
    results, cache = tripwire.changed()
    if not results and not cache:
        return
    tripwire.repair(results, cache)
    _, attack, _ = attack_label(registry, cell)
    entry = registry.get("defense", cell.defense.name)
    defense = f"defense {cell.defense.display!r} (plugin {entry.plugin}, {entry.distribution})"
    names = ", ".join(str(p) for p in [*results, *cache][:5])
    raise ComponentFailure(
        f"files outside the cell changed while {attack} and {defense} ran: {names}"
        f"{' ...' if len(results) + len(cache) > 5 else ''}; {len(results)} finished result(s) "
        f"were restored and {len(cache)} cache file(s) removed (rebuilt on next use). A plugin "
        "must not write outside its scratch folder",
        f"attack:{cell.attack.name}+defense:{cell.defense.name}")


def run_isolated(cell: CellSpec, registry: Registry, env: CellEnvironment,
                 device: str) -> tuple[dict, dict]:
    """The cell's three phases with the server and the attack in worker processes.

    Both workers start as soon as the victim is ready and build while the evaluator
    loads its own copy for scoring.
    """
    protect_evaluator()
    worker_context()  # the fork server preloads while the victim is prepared
    victim = prepare_victim(registry, cell, env, device)
    drop, why = privileges_droppable()
    tripwire = Tripwire.arm(env.out, env.cache_dir)
    server = _start_server(cell, registry, env, device, victim, drop)
    client = None
    gateway = HttpGateway(cell, victim.data) if cell.transport == "http" else None
    try:
        with gateway.running() if gateway is not None else nullcontext() as url:
            client = AttackClient(_client_request(cell, victim, device, drop, url, registry, env))
            served = registry.get("backend", cell.backend).cls().load(victim, device,
                                                                      env.cache_dir)
            server.wait_ready()
            theft, isolation = _steal(cell, registry, server, client, victim, gateway)
        client.close()
        metrics, theft_diagnostics = score_theft(victim, served, theft, device)
        metrics.update(measure_defense(server, victim.data.test, cell.seed, theft))
    finally:
        if client is not None:
            client.close()
        server.close()
        _check_tripwire(tripwire, cell, registry)
    isolation.update(mode="process", transport=cell.transport, server=server.sandbox,
                     privileges="dropped to nobody" if drop else f"kept ({why})")
    return metrics, _diagnostics(victim, served, server.latency_quantiles, theft,
                                 theft_diagnostics, isolation)
