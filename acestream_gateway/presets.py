"""Engine presets: how each engine image wants to be told its port, as one named contract.

Every AceStream engine image wraps the same ``start-engine`` differently (docs/ENGINE_IMAGES.md):
one reads its container command, one writes a configuration file from environment variables, one
expands a single variable in a shell. Giving an image the wrong contract yields engines that
listen on a port the gateway never calls, so the contract is named (``ENGINE_PRESET``) rather than
left for users to reverse-engineer. The free-form ``ENGINE_ARGS``/``ENGINE_ENV`` add to a preset,
or, with ``custom``, are the whole contract.

Pure decisions only: the settings validate with this module at start, the fleet's container specs
render with it for each engine.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class PresetError(ValueError):
    """A preset, template or combination of them that cannot configure an engine."""


@dataclass(frozen=True, slots=True)
class EnginePorts:
    """The ports one engine is told about. Each field is the ``{placeholder}`` of its name in
    command and environment templates, so a new port is one new field here."""

    port: int
    """The engine's HTTP API port, inside the container and as published on the host."""
    p2p_port: int = 8621
    """The engine's P2P port (``--port``). Engines sharing one network namespace (behind one VPN
    container) each need their own; alone in its container an engine may keep the default."""


PLACEHOLDERS = tuple(f"{{{f.name}}}" for f in dataclasses.fields(EnginePorts))


def render(template: str, ports: EnginePorts) -> str:
    """Put the engine's ports in a template (``{{`` and ``}}`` stand for literal braces)."""
    values = {f.name: getattr(ports, f.name) for f in dataclasses.fields(EnginePorts)}
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        allowed = ", ".join(PLACEHOLDERS)
        raise PresetError(f"only {allowed} may stand in braces ({exc!r})") from None


def check_template(template: str) -> None:
    """Raise :class:`PresetError` unless ``template`` renders for any engine."""
    render(template, EnginePorts(**{f.name: 1 for f in dataclasses.fields(EnginePorts)}))


def split_args(text: str) -> tuple[str, ...]:
    """Engine arguments written as a shell would (quotes group words), as separate words."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:  # an unbalanced quote
        raise PresetError(f"cannot be split into arguments: {exc}") from None


@dataclass(frozen=True, slots=True)
class Launch:
    """An engine container's command (empty: the image's own) and environment."""

    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)

    def render(self, ports: EnginePorts) -> Launch:
        return Launch(
            tuple(render(word, ports) for word in self.command),
            {key: render(value, ports) for key, value in self.environment.items()},
        )


@dataclass(frozen=True, slots=True)
class Preset:
    """One image's contract: what it reads, and where extra engine arguments go."""

    name: str
    summary: str
    repositories: tuple[str, ...] = ()
    """The images (repositories, without tag) that follow this contract."""
    command: tuple[str, ...] = ()
    """Container command templates; empty keeps the image's own."""
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Environment templates."""
    args_variable: str | None = None
    """The variable whose value holds the engine's arguments, when the image reads them there."""
    takes_command: bool = True
    """Whether the image passes its container command on to the engine."""
    p2p_args: tuple[str, ...] | None = ()
    """Engine arguments that set its P2P port, added where engines share a network namespace;
    None when the image offers no way to set it."""

    def launch(
        self,
        extra_args: str = "",
        extra_env: Mapping[str, str] | None = None,
        *,
        shared_namespace: bool = False,
    ) -> Launch:
        """This contract with ``ENGINE_ENV`` entries added (they win over the preset's) and
        ``ENGINE_ARGS`` after the preset's own arguments, wherever this image reads arguments.

        With ``shared_namespace`` (engines behind a VPN container) the preset's P2P port
        arguments come first among the extra ones, so every engine gets ``{p2p_port}``.
        """
        environment = {**self.environment, **(extra_env or {})}
        args = split_args(extra_args)
        if shared_namespace:
            if self.p2p_args is None:
                raise PresetError(
                    f"images of ENGINE_PRESET={self.name} cannot be told a P2P port, and engines "
                    "behind a VPN container (GLUETUN_CONTAINER_NAME) share one network namespace, "
                    "so each needs its own: use another image, or ENGINE_PRESET=custom"
                )
            args = self.p2p_args + args
        if not args:
            return Launch(self.command, environment)
        if self.args_variable is not None:
            environment[self.args_variable] = _appended(
                environment.get(self.args_variable, ""), args, self
            )
            return Launch(self.command, environment)
        if not self.takes_command:
            raise PresetError(
                f"ENGINE_ARGS is ignored by images of ENGINE_PRESET={self.name} (they do not read "
                "their container command): set ENGINE_ENV instead, or ENGINE_PRESET=custom"
            )
        return Launch(self.command + args, environment)


def _appended(value: str, args: tuple[str, ...], preset: Preset) -> str:
    # The image expands the variable unquoted in a shell: words split on spaces and nothing
    # unquotes them, so an argument holding a space or a quote cannot be passed this way.
    for word in args:
        if any(char.isspace() or char in "'\"\\" for char in word):
            raise PresetError(
                f"ENGINE_ARGS: images of ENGINE_PRESET={preset.name} split {preset.args_variable} "
                f"on spaces, so the argument {word!r} cannot be passed"
            )
    return " ".join(part for part in (value.strip(), " ".join(args)) if part)


MARTINBJELDBAK = Preset(
    name="martinbjeldbak",
    summary="start-engine --live-cache-type memory --client-console $EXTRA_FLAGS <command>; "
    "ALLOW_REMOTE_ACCESS=yes adds --bind-all",
    repositories=(
        "ghcr.io/martinbjeldbak/acestream-http-proxy",
        "martinbjeldbak/acestream-http-proxy",
    ),
    command=("--http-port", "{port}"),
    environment=MappingProxyType({"ALLOW_REMOTE_ACCESS": "yes"}),
    p2p_args=("--port", "{p2p_port}"),
)
KRINKUTO11 = Preset(
    name="krinkuto11",
    summary="writes a configuration file from HTTP_PORT, HTTPS_PORT and BIND_ALL; "
    "ignores its container command",
    repositories=("ghcr.io/krinkuto11/acestream-http-proxy",),
    environment=MappingProxyType({"HTTP_PORT": "{port}", "BIND_ALL": "true"}),
    takes_command=False,
    p2p_args=None,
)
JOPSIS = Preset(
    name="jopsis",
    summary="sh -c 'start-engine ${ACESTREAM_ARGS}'; a container command replaces all of it",
    repositories=("jopsis/acestream",),
    environment=MappingProxyType(
        {"ACESTREAM_ARGS": "--client-console --bind-all --http-port {port}"}
    ),
    args_variable="ACESTREAM_ARGS",
    p2p_args=("--port", "{p2p_port}"),
)
CUSTOM = Preset(
    name="custom",
    summary="nothing preset: ENGINE_ARGS is the container command, ENGINE_ENV the environment",
    p2p_args=(),  # the user's templates say where {p2p_port} goes
)

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {preset.name: preset for preset in (MARTINBJELDBAK, KRINKUTO11, JOPSIS, CUSTOM)}
)
DEFAULT_PRESET = MARTINBJELDBAK
"""The contract of the default ENGINE_IMAGE."""


def preset_named(name: str) -> Preset:
    """The preset called ``name`` (any case); :class:`PresetError` lists the valid names."""
    preset = PRESETS.get(name.strip().lower())
    if preset is None:
        raise PresetError(f"must be one of {', '.join(PRESETS)}")
    return preset


def preset_for_image(image: str) -> Preset | None:
    """The preset of a known image reference (any registry spelling, tag or digest)."""
    repository = repository_of(image)
    for preset in PRESETS.values():
        if repository in (repository_of(known) for known in preset.repositories):
            return preset
    return None


def repository_of(image: str) -> str:
    """An image reference without tag or digest, Docker Hub spelled the short way."""
    name = image.strip().lower().split("@", 1)[0]
    slash = name.rfind("/")
    if ":" in name[slash + 1 :]:
        name = name[: name.rindex(":")]
    for hub in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(hub):
            name = name.removeprefix(hub).removeprefix("library/")
    return name


def choose_preset(name: str | None, image: str) -> tuple[Preset, str]:
    """The preset an engine gets and why: ``ENGINE_PRESET`` when set, else the one of a known
    ``ENGINE_IMAGE``, else the default image's."""
    if name is not None:
        return preset_named(name), "ENGINE_PRESET"
    known = preset_for_image(image)
    if known is not None:
        return known, "ENGINE_IMAGE"
    return DEFAULT_PRESET, "default"
