"""What the fan-out benchmark measures: its cases (upstream shape, bitrate, channels, players).

Every case runs on the floor (cfanout, one process per channel) and then on a fresh gateway, back
to back, so their CPU per delivered byte compare. Two upstream shapes: the emulator's large
blocks (one every 100 ms) and a live engine's small pieces (one every 20 ms). Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SHAPES = {"blocks": 0.1, "pieces": 0.02}
"""Upstream shape name -> the emulator's ``write_interval_s``."""

TARGETS = {(1, 1000, 8_000_000): 1.25, (1, 200, 4_000_000): 1.5, (50, 10, 4_000_000): 1.5}
"""(channels, players per channel, bitrate) -> the gateway/floor CPU ratio it must stay within,
for every upstream shape."""


@dataclass(frozen=True, slots=True)
class Case:
    """One measured load: ``channels`` channels with ``players`` players each."""

    shape: str
    bitrate_bps: int
    channels: int
    players: int  # per channel

    @property
    def name(self) -> str:
        return f"{self.shape}-{self.channels}x{self.players}-{self.bitrate_bps // 1_000_000}M"

    @property
    def target_ratio(self) -> float | None:
        return TARGETS.get((self.channels, self.players, self.bitrate_bps))

    @property
    def total_players(self) -> int:
        return self.channels * self.players

    @property
    def write_interval_s(self) -> float:
        return SHAPES[self.shape]

    @property
    def bytes_per_s(self) -> float:
        return self.bitrate_bps / 8

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": self.shape,
            "bitrate_bps": self.bitrate_bps,
            "channels": self.channels,
            "players": self.players,
            "total_players": self.total_players,
        }


def default_cases(
    shapes: tuple[str, ...] = tuple(SHAPES),
    players: tuple[int, ...] = (50, 200, 500, 1000),
    channels: tuple[int, ...] = (1, 10, 50),
    large: bool = True,
) -> list[Case]:
    """The cost curve (one channel at 4 Mbit/s, then 10 players per channel on several channels)
    and the large case (1,000 players x 8 Mbit/s), for each shape."""
    cases: list[Case] = []
    for shape in shapes:
        cases += [Case(shape, 4_000_000, 1, n) for n in players]
        cases += [Case(shape, 4_000_000, n, 10) for n in channels]
        if large:
            cases.append(Case(shape, 8_000_000, 1, 1000))
    return cases
