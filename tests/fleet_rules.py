"""The rules of the fleet's state machine (``tests/fleet_machine.py``) that act as players and
engines do, and as Docker does: each a part of the machine, which has the attributes below."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from acestream_gateway.engines.model import EngineState
from acestream_gateway.engines.pool import Claim, EnginePool
from tests.fakedocker import FakeDocker

if TYPE_CHECKING:
    from tests.fleet_machine import EngineApis, Side

CONTENTS = ("aa", "bb", "cc", "dd")
METHODS = ("list", "run", "inspect", "remove", "ensure_image")


class PlayerRules:
    """Players claiming, playing, leaving and failing over; engines' health and boot."""

    pool: EnginePool
    claims: list[Claim]
    crashes: list[str]
    apis: EngineApis

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, player: bool = False) -> None:
        raise NotImplementedError

    def _engine_ids(self) -> list[str]:
        raise NotImplementedError

    @rule(content=st.sampled_from(CONTENTS))
    def player_claims(self, content: str) -> None:
        async def claim() -> None:
            self.claims.append(self._granted(await self.pool.claim(content)))

        self._spawn(claim(), f"claim {content}", player=True)

    def _granted(self, claim: Claim) -> Claim:
        engine = claim.engine
        if self.pool.get(engine.id) is not engine or engine.state is not EngineState.READY:
            self.crashes.append(f"claim handed on engine {engine.name}, {engine.state.value}")
        return claim

    @precondition(lambda self: self.claims)
    @rule(pick=st.integers(0, 8), activate=st.booleans())
    def player_plays_or_leaves(self, pick: int, activate: bool) -> None:
        claim = self.claims[pick % len(self.claims)]
        if activate:
            claim.activate()
        else:
            claim.release()
            self.claims.remove(claim)

    @precondition(lambda self: self.claims)
    @rule(pick=st.integers(0, 8))
    def channel_fails_over(self, pick: int) -> None:
        """The channel moves: the new slot is claimed before the old one is released (rule 2)."""
        old = self.claims.pop(pick % len(self.claims))

        async def failover() -> None:
            try:
                new = await self.pool.claim(
                    old.content_key, exclude={old.engine.id}, wait_for_provisioning=True
                )
            finally:
                old.release()
            self.claims.append(self._granted(new))

        self._spawn(failover(), f"failover {old.content_key}", player=True)

    @precondition(lambda self: self.pool.engines())
    @rule(pick=st.integers(0, 8), fails=st.integers(1, 3))
    def engine_health_fails(self, pick: int, fails: int) -> None:
        ids = self._engine_ids()
        for _ in range(fails):
            self.pool.note_failure(ids[pick % len(ids)], "status probe timed out")

    @precondition(lambda self: self.apis.booting is None)
    @rule()
    def engines_boot_slowly(self) -> None:
        """New engines stay STARTING (their API does not answer yet) until they boot."""
        self.apis.booting = asyncio.Event()

    @precondition(lambda self: self.apis.booting is not None)
    @rule()
    def engines_boot(self) -> None:
        self._engines_boot()

    def _engines_boot(self) -> None:
        if self.apis.booting is not None:
            self.apis.booting.set()
            self.apis.booting = None


class DockerRules:
    """Docker failing a call, holding one, losing containers; an endpoint going and coming."""

    gates: list[asyncio.Event]
    engine_faults: int
    daemons: list[FakeDocker]

    def _on(self, where: int) -> Side:
        raise NotImplementedError

    def _containers(self) -> list[tuple[Side, str]]:
        raise NotImplementedError

    def _answer_held_calls(self) -> None:
        raise NotImplementedError

    @rule(
        method=st.sampled_from(METHODS),
        fault=st.sampled_from(["409", "500", "timeout_before", "timeout_after", "hold", "late"]),
        where=st.integers(0, 2),
    )
    def docker_fails_a_call(self, method: str, fault: str, where: int = 0) -> None:
        docker = self._on(where).docker
        if fault in ("409", "500") and method in ("run", "ensure_image"):
            self.engine_faults += 1  # Docker refuses the engine or its image
        if fault in ("409", "500"):
            message = "Conflict" if fault == "409" else "internal server error"
            docker.fail(method, int(fault), message)
        elif fault.startswith("timeout"):
            docker.time_out(method, after=fault == "timeout_after")
        else:
            self.gates.append(docker.hold(method, late=fault == "late"))

    @precondition(lambda self: self.gates)
    @rule()
    def docker_answers(self) -> None:
        self._answer_held_calls()

    @precondition(lambda self: self._containers())
    @rule(pick=st.integers(0, 8), how=st.sampled_from(["lost", "died", "destroyed"]))
    def container_goes(self, pick: int, how: str) -> None:
        containers = self._containers()
        side, container_id = containers[pick % len(containers)]
        self.engine_faults += 1  # an engine that was starting may have died
        if how == "lost":  # gone without an event (missed while the stream was down)
            side.docker.lose(container_id)
        elif how == "died":
            side.docker.kill(container_id)
        else:  # someone else removed it: die, then destroy
            side.docker.kill(container_id)
            side.docker.destroy(container_id)

    @rule(where=st.integers(0, 2), host=st.booleans())
    def endpoint_goes_away(self, where: int, host: bool) -> None:
        """Its daemon stops answering (``host``: the whole machine, its engines too): its event
        stream breaks; its containers stay, or are lost meanwhile by other rules."""
        side = self._on(where)
        side.docker.down = True
        side.host_down = host

    @precondition(lambda self: any(d.down for d in self.daemons))
    @rule(where=st.integers(0, 2))
    def endpoint_comes_back(self, where: int) -> None:
        side = self._on(where)
        side.docker.down = False
        side.host_down = False
