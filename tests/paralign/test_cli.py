"""The ``paralign`` command line: overrides anywhere after the sub-command, other unknown words refused."""
from __future__ import annotations

from pathlib import Path

import pytest

from paralign.cli import main

TINY = str(Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml")


def _encoder_line(capsys) -> str:
    return next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("encoder"))


def test_overrides_split_by_an_option_are_all_applied_not_refused(capsys) -> None:
    assert main(["train", "--recipe", TINY, "--dry-run", "encoder.d_model=48"]) == 0
    one = _encoder_line(capsys)
    assert main(["train", "--recipe", TINY, "encoder.d_model=48", "encoder.layers=2", "--dry-run"]) == 0
    together = _encoder_line(capsys)
    # argparse alone refuses this one: its list of positionals ends at the first option
    assert main(["train", "--recipe", TINY, "encoder.d_model=48", "--dry-run", "encoder.layers=2"]) == 0
    split = _encoder_line(capsys)
    assert split == together != one


@pytest.mark.parametrize("extra, says", [(["--no-such-option"], "unrecognized arguments: --no-such-option"),
                                         (["stray-word"], "override 'stray-word' is not key=value"),
                                         (["--dry-run", "oops"], "override 'oops' is not key=value")])
def test_other_unknown_words_are_still_refused(extra, says, capsys) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["train", "--recipe", TINY, *extra])
    assert says in f"{refused.value.code} {capsys.readouterr().err}"


def test_a_command_without_overrides_refuses_key_value_words(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["synth", "--out", "/tmp/x", "trainer.max_steps=3"])
    assert "unrecognized arguments: trainer.max_steps=3" in capsys.readouterr().err
