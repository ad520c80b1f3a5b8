"""The zayton command: help for every subcommand, check-config's verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from zayton.cli import main

pytestmark = pytest.mark.unit

EXAMPLES = sorted((Path(__file__).parent.parent / "deploy" / "examples").glob("*.toml"))


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        ([], "check-config"),
        (["demo"], "--data-dir"),
        (["simulate"], "clock_drift"),
        (["simulate", "backfill"], "--days"),
        (["simulate", "loadgen"], "--rate"),
        (["simulate", "fault"], "word_order"),
        (["gateway", "run"], "CONFIG"),
        (["ingest", "run"], "--share-group"),
        (["api"], "--database-url"),
        (["db", "migrate"], "--storage"),
        (["check-config"], "FILE"),
    ],
)
def test_every_command_has_useful_help(
    argv: list[str], mentions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    assert mentions in capsys.readouterr().out


def test_shipped_examples_pass_check_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert EXAMPLES
    assert main(["check-config", *map(str, EXAMPLES)]) == 0
    assert capsys.readouterr().out.count(": ok,") == len(EXAMPLES)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (("port = 5020", "port = 70000"), "devices.0.port: Input should be less than or equal"),
        (("interval_s = 5\n", "interval_s = 5\ncolour = 1\n"), "devices.0.colour: Extra"),
        (
            ('profile = "zayton-meter-u32-cdab"', 'profile = "nope"'),
            "devices.0.profile: no profile",
        ),
        (('uplink = "5g"', 'uplink = "6g"'), "gateway.uplink"),
        (('url = "mqtt://', 'url = "http://'), "mqtt.url"),
        (('name = "eva-1-meter"', 'name = "incomer"'), "used twice"),
        (("[mqtt]", '[sparkplug]\ngroup_id = "park/a"\n\n[mqtt]'), "sparkplug.group_id"),
    ],
)
def test_check_config_names_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mistake: tuple[str, str],
    message: str,
) -> None:
    text = EXAMPLES[0].read_text()
    assert mistake[0] in text
    broken = tmp_path / "gateway.toml"
    broken.write_text(text.replace(mistake[0], mistake[1], 1))
    assert main(["check-config", str(broken)]) == 1
    err = capsys.readouterr().err
    assert str(broken) in err
    assert message in err
