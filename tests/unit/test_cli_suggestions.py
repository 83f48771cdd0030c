"""The lazy command table keeps click's help for typos: every command name is a possibility."""

from __future__ import annotations

from click.testing import CliRunner

from imagegen.cli.main import main


def test_a_mistyped_command_gets_suggestions() -> None:
    result = CliRunner().invoke(main, ["stat"])
    assert result.exit_code == 2
    assert "No such command 'stat'" in result.output
    assert "'stats'" in result.output and "'status'" in result.output
