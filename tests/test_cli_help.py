"""Every command-line option says what it is for: `vlbicore <command> --help` shows a help line for each
option and argument of every sub-command, and the campaign commands name what their values are."""
from __future__ import annotations

import argparse

import pytest

from vlbicore.cli import build_parser


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(words, parser) of every sub-command, nested ones (`campaign init`) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from subcommands(sub, (*prefix, name))


COMMANDS = list(subcommands(build_parser()))


@pytest.mark.parametrize("words,parser", COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_every_option_has_a_help_line(words, parser, capsys):
    options = [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    for action in options:
        assert action.help and len(action.help) >= 10, f"vlbicore {' '.join(words)}: {action.dest} has no help"
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*words, "--help"])
    assert exit_info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for action in options:
        assert " ".join(action.help.split())[:40].replace("%%", "%") in shown, (words, action.dest)


@pytest.mark.parametrize("command", ["summary", "gather", "plot", "report", "status", "campaign init", "profile install"])
def test_campaign_commands_name_their_values(command):
    parser = dict(COMMANDS)[tuple(command.split())]
    assert parser.description or parser.format_usage()
    for action in parser._actions:
        takes_value = action.nargs != 0 and not isinstance(action, argparse._HelpAction)
        if takes_value and action.option_strings:
            assert action.metavar, f"vlbicore {command} {action.option_strings[0]}: shown as a bare name"
