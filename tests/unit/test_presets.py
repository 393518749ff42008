"""Engine presets: each image's contract renders to the command and environment it reads, and
ENGINE_ARGS / ENGINE_ENV add to a preset the way users of that image would expect."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acestream_gateway.presets import (
    DEFAULT_PRESET,
    PRESETS,
    EnginePorts,
    Launch,
    PresetError,
    check_template,
    choose_preset,
    preset_for_image,
    preset_named,
    render,
    repository_of,
)
from acestream_gateway.settings import Settings

ports = st.integers(min_value=1, max_value=65535)
words = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="'\"\\{}"),
    min_size=1,
    max_size=12,
)


def launch_of(name: str, port: int, args: str = "", env: dict[str, str] | None = None) -> Launch:
    return PRESETS[name].launch(args, env).render(EnginePorts(port=port))


@given(port=ports)
def test_martinbjeldbak_gets_its_port_as_arguments_and_remote_access_by_its_variable(
    port: int,
) -> None:
    # Its entrypoint adds --live-cache-type memory --client-console itself; --bind-all comes from
    # ALLOW_REMOTE_ACCESS=yes; HTTP_PORT is not read.
    assert launch_of("martinbjeldbak", port) == Launch(
        ("--http-port", str(port)), {"ALLOW_REMOTE_ACCESS": "yes"}
    )


@given(port=ports)
def test_krinkuto11_gets_its_port_by_environment_and_no_command(port: int) -> None:
    assert launch_of("krinkuto11", port) == Launch((), {"HTTP_PORT": str(port), "BIND_ALL": "true"})


@given(port=ports)
def test_jopsis_gets_every_engine_argument_in_acestream_args(port: int) -> None:
    assert launch_of("jopsis", port) == Launch(
        (), {"ACESTREAM_ARGS": f"--client-console --bind-all --http-port {port}"}
    )


@given(port=ports)
def test_custom_is_exactly_engine_args_and_engine_env(port: int) -> None:
    assert launch_of("custom", port) == Launch((), {})
    assert launch_of("custom", port, "--client-console --http-port {port}", {"A": "{port}"}) == (
        Launch(("--client-console", "--http-port", str(port)), {"A": str(port)})
    )


@given(port=ports, args=st.lists(words, max_size=4))
def test_engine_args_come_after_the_preset_arguments_where_the_image_reads_arguments(
    port: int, args: list[str]
) -> None:
    text = " ".join(args)
    martin = launch_of("martinbjeldbak", port, text)
    assert martin.command == ("--http-port", str(port), *args)
    jopsis = launch_of("jopsis", port, text)
    assert jopsis.command == ()
    assert jopsis.environment["ACESTREAM_ARGS"].split() == [
        "--client-console",
        "--bind-all",
        "--http-port",
        str(port),
        *args,
    ]


def test_engine_args_are_split_as_a_shell_would() -> None:
    launch = launch_of("custom", 7000, "--a 'two words' --b={port}")
    assert launch.command == ("--a", "two words", "--b=7000")


def test_an_argument_that_an_unquoted_shell_expansion_would_break_is_refused() -> None:
    with pytest.raises(PresetError, match="ENGINE_PRESET=jopsis split ACESTREAM_ARGS"):
        PRESETS["jopsis"].launch("--cache-dir '/a b'")


def test_engine_args_for_an_image_that_ignores_its_command_are_refused() -> None:
    with pytest.raises(PresetError, match="ENGINE_ARGS is ignored by images of ENGINE_PRESET="):
        PRESETS["krinkuto11"].launch("--live-buffer 25")


@given(port=ports, name=st.sampled_from(sorted(PRESETS)), value=words)
def test_engine_env_adds_to_the_preset_environment_and_wins_on_the_same_name(
    port: int, name: str, value: str
) -> None:
    preset = PRESETS[name]
    env = {"EXTRA": value, **dict.fromkeys(preset.environment, value)}
    launch = launch_of(name, port, env=env)
    assert launch.environment == env
    assert launch.command == launch_of(name, port).command


def test_engine_env_replaces_jopsis_arguments_and_engine_args_still_follow_them() -> None:
    launch = launch_of("jopsis", 7000, "--live-buffer 25", {"ACESTREAM_ARGS": "--http-port {port}"})
    assert launch.environment == {"ACESTREAM_ARGS": "--http-port 7000 --live-buffer 25"}


@given(port=ports)
def test_every_preset_tells_the_engine_its_port(port: int) -> None:
    for name, preset in PRESETS.items():
        if name == "custom":
            continue
        launch = launch_of(name, port)
        told = " ".join(launch.command) + " " + " ".join(launch.environment.values())
        assert str(port) in told.split(), name
        assert "{" not in told, name
        assert preset.repositories, name


@given(port=ports)
def test_the_default_preset_is_the_default_image_s(port: int) -> None:
    settings = Settings()
    assert settings.engine_preset_choice() == (DEFAULT_PRESET, "ENGINE_IMAGE")
    assert preset_for_image(settings.engine_image) is DEFAULT_PRESET
    assert settings.engine_launch(port) == launch_of("martinbjeldbak", port)


@pytest.mark.parametrize(
    ("image", "preset"),
    [
        ("ghcr.io/martinbjeldbak/acestream-http-proxy:latest", "martinbjeldbak"),
        ("martinbjeldbak/acestream-http-proxy", "martinbjeldbak"),
        ("docker.io/martinbjeldbak/acestream-http-proxy:3.2.11", "martinbjeldbak"),
        ("GHCR.IO/Krinkuto11/acestream-http-proxy:latest", "krinkuto11"),
        ("ghcr.io/krinkuto11/acestream-http-proxy@sha256:" + "a" * 64, "krinkuto11"),
        ("jopsis/acestream:x64", "jopsis"),
        ("index.docker.io/jopsis/acestream:arm64", "jopsis"),
    ],
)
def test_a_known_image_chooses_its_preset_whatever_its_tag_or_registry_spelling(
    image: str, preset: str
) -> None:
    assert choose_preset(None, image) == (PRESETS[preset], "ENGINE_IMAGE")


@pytest.mark.parametrize(
    "image", ["localhost:5000/acestream:1", "example.org/jopsis/acestream", "acestream-engine"]
)
def test_an_unknown_image_gets_the_default_preset(image: str) -> None:
    assert choose_preset(None, image) == (DEFAULT_PRESET, "default")


def test_engine_preset_wins_over_the_image() -> None:
    chosen = choose_preset("Custom", "ghcr.io/krinkuto11/acestream-http-proxy")
    assert chosen == (PRESETS["custom"], "ENGINE_PRESET")


def test_a_registry_port_is_not_taken_for_a_tag() -> None:
    assert repository_of("localhost:5000/jopsis/acestream") == "localhost:5000/jopsis/acestream"
    assert repository_of("localhost:5000/jopsis/acestream:x64") == "localhost:5000/jopsis/acestream"


@pytest.mark.parametrize("name", ["", "vpn", "martin", "jopsis:x64"])
def test_an_unknown_preset_name_lists_the_known_ones(name: str) -> None:
    with pytest.raises(PresetError, match="must be one of martinbjeldbak, krinkuto11, jopsis"):
        preset_named(name)


@pytest.mark.parametrize(
    "template", ["{prot}", "{0}", "{}", "{port.x}", "{port[0]}", "{port!z}", "{"]
)
def test_a_template_with_an_unknown_placeholder_is_refused(template: str) -> None:
    with pytest.raises(PresetError, match=r"only \{port\}, \{p2p_port\} may stand in braces"):
        check_template(template)


def test_doubled_braces_are_literal() -> None:
    assert render("{{port}}={port}", EnginePorts(port=5)) == "{port}=5"
