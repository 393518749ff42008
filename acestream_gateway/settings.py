"""The gateway's configuration: one frozen object read from environment variables at start.

Names follow acestream-orchestrator where the meaning is the same, so its users can carry their
settings over. Every field has a default that works out of the box; invalid values stop the process
at start with a message naming the variable (see :func:`describe_errors`).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import presets

_PORT_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")


class PortRange(tuple[int, int]):
    """An inclusive range of TCP ports, written ``lo-hi``."""

    __slots__ = ()

    @property
    def lo(self) -> int:
        return self[0]

    @property
    def hi(self) -> int:
        return self[1]

    def __len__(self) -> int:  # the number of ports, not the tuple's length
        return self.hi - self.lo + 1

    def __str__(self) -> str:
        return f"{self.lo}-{self.hi}"

    @classmethod
    def parse(cls, text: str) -> PortRange:
        match = _PORT_RANGE.match(text)
        if match is None:
            raise ValueError(f"must be 'lo-hi' with two port numbers, got {text!r}")
        lo, hi = int(match[1]), int(match[2])
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"must satisfy 1 <= lo <= hi <= 65535, got {text!r}")
        return cls((lo, hi))


class Settings(BaseSettings):
    """Everything the gateway can be told, from the environment (case-insensitive names)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    # --- where the gateway listens -------------------------------------------------------------
    gateway_host: str = "0.0.0.0"
    """Address the gateway's HTTP server binds to."""
    gateway_port: int = Field(8000, ge=1, le=65535)
    """TCP port of the gateway's HTTP server."""
    gateway_instance_name: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    """Label value that keeps two gateways on one Docker host out of each other's engines."""

    # --- the engine fleet ----------------------------------------------------------------------
    min_replicas: int = 1
    """Engines with no stream kept ready at all times (>= 1), capped by MAX_ACTIVE_REPLICAS."""
    max_active_replicas: int = Field(20, ge=1)
    """Most engine containers the gateway runs at once, in every mode."""
    max_streams_per_engine: int = Field(2, ge=1)
    """Most engine sessions (distinct channels) one engine carries at once."""
    port_range_host: Annotated[PortRange, NoDecode] = PortRange((19000, 19999))
    """Inclusive host port range (``lo-hi``) engines' HTTP ports are taken from, one per engine."""
    engine_image: str = Field("ghcr.io/martinbjeldbak/acestream-http-proxy:latest", min_length=1)
    """Docker image of the AceStream engine; pulled if missing."""
    engine_preset: str | None = None
    """Which image contract fills the engine's command and environment from its port:
    ``martinbjeldbak``, ``krinkuto11``, ``jopsis`` or ``custom`` (see docs/ENGINE_IMAGES.md).
    Unset: the preset of a known ENGINE_IMAGE, else ``martinbjeldbak`` (the default image's)."""
    engine_args: str = ""
    """Extra engine arguments, after the preset's own (split as a shell would); ``{port}`` stands
    for the engine's HTTP port. With ENGINE_PRESET=custom: the whole container command, and empty
    keeps the image's own."""
    engine_env: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Engine environment as a JSON object, added to the preset's (on the same name this value
    wins); ``{port}`` in values stands for the engine's HTTP port."""
    engine_host_address: str = "127.0.0.1"
    """Host address engines' ports are published on, and the address the gateway calls them at."""
    engine_network: str | None = None
    """Docker network engines join (default: Docker's default bridge)."""
    engine_name_prefix: str = Field("acestream-engine", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Prefix of engine container names (followed by the instance name and the port)."""
    engine_startup_timeout_s: float = Field(60.0, gt=0)
    """Seconds a new engine container may take to answer its HTTP API before it is replaced."""
    engine_grace_period_s: float = Field(30.0, ge=0)
    """Seconds an engine must have been idle before a surplus engine is removed."""
    health_check_interval_s: float = Field(10.0, gt=0)
    """Seconds between two reconciliations of the fleet (adoption, replicas, health)."""
    docker_timeout_s: float = Field(30.0, gt=0)
    """Seconds one Docker API call may take (image pulls get ten times as long)."""
    provision_concurrency: int = Field(3, ge=1)
    """Most engines started at the same time when the fleet must grow by several."""
    port_recheck_s: float = Field(30.0, gt=0)
    """Seconds a host port that another program holds (Docker could not bind it) is left alone
    before it is tried again."""

    # --- health, failover and the provisioning breaker ------------------------------------------
    health_failure_threshold: int = Field(3, ge=1)
    """Consecutive failed probes (or failed session starts) before an engine is UNHEALTHY."""
    health_probe_timeout_s: float = Field(3.0, gt=0)
    """Seconds one health probe of a running engine may take."""
    health_probe_concurrency: int = Field(8, ge=1)
    """Most engines probed at the same time."""
    unhealthy_engine_timeout_s: float = Field(30.0, ge=0)
    """Seconds an unhealthy engine is kept so its channels can move to other engines; it is removed
    as soon as it carries none, and after this long at the latest."""
    failover_attempts: int = Field(3, ge=0)
    """Times a playing channel is opened again (same or other engine) before its players end."""
    failover_backoff_s: float = Field(0.5, ge=0)
    """Delay before the second failover attempt; it doubles for each further one."""
    circuit_breaker_failure_threshold: int = Field(3, ge=1)
    """Consecutive provisioning failures that open the circuit breaker."""
    circuit_breaker_recovery_timeout_s: float = Field(30.0, gt=0)
    """Seconds the breaker first stays open before one probing attempt; doubles on each failure."""
    circuit_breaker_max_backoff_s: float = Field(300.0, gt=0)
    """Longest the breaker stays open between two probing attempts."""

    # --- talking to engines ----------------------------------------------------------------------
    engine_api_timeout_s: float = Field(10.0, gt=0)
    """Seconds an engine may take to answer a JSON API call (starting a session, stat)."""
    engine_stop_timeout_s: float = Field(5.0, gt=0)
    """Seconds a session stop may take; the engine sometimes hangs on stop."""
    first_data_timeout_s: float = Field(60.0, gt=0)
    """Seconds from starting a session until the engine sends its first stream bytes."""
    stall_timeout_s: float = Field(20.0, gt=0)
    """Seconds without stream bytes during playback before the upstream counts as stalled."""
    stream_linger_s: float = Field(5.0, ge=0)
    """Seconds a session lingers after its last player left, so channel zapping reuses it."""
    keepalive_interval_s: float = Field(1.0, gt=0)
    """Seconds between keep-alive TS null packets sent to players while the engine prebuffers."""
    player_buffer_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024)
    """How far (bytes) a player may fall behind the live edge before it is dropped."""
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """The event loop: uvloop (faster fan-out) when installed with ``auto``, or asyncio's own."""
    provision_wait_s: float = Field(60.0, ge=0)
    """Seconds a new channel waits for a free engine to be provisioned before getting 503."""

    allow_url_input: bool = False
    """Whether players may name content by ``url`` or ``magnet`` (the engine then fetches it)."""

    # --- operations ----------------------------------------------------------------------------
    api_key: SecretStr | None = None
    """Key for management endpoints (``Authorization: Bearer`` or ``X-API-Key``); unset = off."""
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=AliasChoices("log_level", "LOG_LEVEL")
    )
    """Lowest level of log events written."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """``json`` lines, readable ``console`` lines, or ``auto``: console on a terminal, else JSON."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("port_range_host", mode="before")
    @classmethod
    def _parse_port_range(cls, value: object) -> object:
        return PortRange.parse(value) if isinstance(value, str) else value

    @field_validator("engine_env", mode="before")
    @classmethod
    def _parse_engine_env(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError:
            raise ValueError('must be a JSON object such as {"HTTP_PORT": "{port}"}') from None
        if not isinstance(parsed, dict):
            raise ValueError('must be a JSON object such as {"HTTP_PORT": "{port}"}')
        return {str(k): str(v) for k, v in parsed.items()}

    @field_validator("engine_env")
    @classmethod
    def _env_format(cls, value: dict[str, str]) -> dict[str, str]:
        for template in value.values():
            presets.check_template(template)
        return value

    @field_validator("engine_preset", mode="before")
    @classmethod
    def _known_preset(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None  # set but empty: as if unset
        return presets.preset_named(value).name

    @field_validator("min_replicas")
    @classmethod
    def _at_least_one_spare(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1: the gateway always keeps an empty engine, got {value}")
        return value

    @field_validator("engine_args")
    @classmethod
    def _args_format(cls, value: str) -> str:
        for word in presets.split_args(value):
            presets.check_template(word)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.min_replicas > self.max_active_replicas:
            raise ValueError(
                f"MIN_REPLICAS ({self.min_replicas}) must not exceed "
                f"MAX_ACTIVE_REPLICAS ({self.max_active_replicas})"
            )
        if len(self.port_range_host) < self.max_active_replicas:
            raise ValueError(
                f"PORT_RANGE_HOST ({self.port_range_host}) has {len(self.port_range_host)} ports, "
                f"fewer than MAX_ACTIVE_REPLICAS ({self.max_active_replicas})"
            )
        return self

    @model_validator(mode="after")
    def _engine_launch_fits(self) -> Settings:
        self.engine_launch_template()  # ENGINE_ARGS the preset's image would ignore, and such
        return self

    def engine_preset_choice(self) -> tuple[presets.Preset, str]:
        """The preset engines get, and what chose it (ENGINE_PRESET, ENGINE_IMAGE or default)."""
        return presets.choose_preset(self.engine_preset, self.engine_image)

    def engine_launch_template(self) -> presets.Launch:
        """The engine containers' command and environment, placeholders not yet filled in."""
        preset, _ = self.engine_preset_choice()
        return preset.launch(self.engine_args, self.engine_env)

    def engine_launch(self, port: int) -> presets.Launch:
        """The command and environment of the engine container whose HTTP port is ``port``."""
        return self.engine_launch_template().render(presets.EnginePorts(port=port))

    def masked(self) -> dict[str, object]:
        """The effective configuration by environment variable name, secrets masked."""
        shown: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, PortRange):
                value = str(value)
            shown[name.upper()] = value
        preset, chosen_by = self.engine_preset_choice()
        launch = self.engine_launch_template()
        shown["ENGINE_PRESET"] = preset.name
        # Not a variable: what the image, preset, ENGINE_ARGS and ENGINE_ENV add up to.
        shown["ENGINE_LAUNCH (effective)"] = {
            "preset": preset.name,
            "chosen_by": chosen_by,
            "contract": preset.summary,
            "command": list(launch.command) or "the image's own",
            "environment": dict(launch.environment),
        }
        return shown


def load_settings() -> Settings:
    """Read the settings from the environment (raises :class:`ValidationError`)."""
    return Settings()


def describe_errors(error: ValidationError) -> list[str]:
    """One line per problem, naming the environment variable, for a message at start."""
    lines = []
    for item in error.errors(include_url=False):
        name = "_".join(str(part) for part in item["loc"]).upper() or "configuration"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message} (got {item.get('input')!r})" if item["loc"] else message)
    return lines
