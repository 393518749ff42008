"""Why a channel could not start or had to end, as types; only ``http/`` turns them into statuses.

Every ``reason`` is short and safe to show a player: it never carries an engine's internal
address or an exception's text (those go to the logs).
"""

from __future__ import annotations


class ChannelError(Exception):
    """A channel could not start, or ended for good, for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoEngine(ChannelError):
    """No engine can take the channel now; ``code`` is the provisioning block behind it
    (``docker_unavailable``, ``circuit_breaker``...), None when none became ready in time."""

    def __init__(self, reason: str, retry_after_s: float, code: str | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s
        self.code = code


class EngineRefusedChannel(ChannelError):
    """The engine answered that it cannot play this content (unknown or broken channel)."""


class EngineFailed(ChannelError):
    """The engine did not answer, or answered nonsense, or its stream broke for good."""


class ChannelClosed(ChannelError):
    """The gateway closed the channel (it is shutting down)."""


class TooManyStarting(ChannelError):
    """So many channels already wait for their start that a new one is refused for now
    (``MAX_WAITING_CHANNELS``); joining a channel that exists is never refused for it."""

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class PlayerLeft(Exception):
    """The player went away while it waited for its channel to start: nobody to answer."""
