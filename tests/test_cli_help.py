"""The CLI checks itself: every `cqia` command and subcommand has help that ends with an example,
every option says what it does, and every command whose output a machine would read has `--json`.

The commands are found by walking the click tree, so a new module in cqia/cli/ is checked
the moment it is added."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cqia.cli import cli


def walk(command: click.Command, path: tuple[str, ...] = ("cqia",)):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, path + (name,))


COMMANDS = list(walk(cli))
LEAVES = [(path, cmd) for path, cmd in COMMANDS if not isinstance(cmd, click.Group)]

# Commands with no --json, and why. A command whose output a program reads gets --json instead.
NO_JSON: dict[str, str] = {}
# Commands that should have --json and do not yet: each is a strict xfail, so adding the flag
# turns the test red until the entry is removed here.
MISSING_JSON: dict[str, str] = {}


def ident(item):
    return " ".join(item[0])


def example_of(help_text: str) -> list[str]:
    """The lines of the help's last paragraph, if that paragraph is the example."""
    paragraphs = [p.strip() for p in help_text.strip().split("\n\n") if p.strip()]
    last = paragraphs[-1].splitlines() if paragraphs else []
    last = [line.strip() for line in last if line.strip() not in ("\b", "")]
    return last[1:] if last and last[0].rstrip(":").lower() in ("example", "examples") else []


@pytest.mark.parametrize("item", COMMANDS, ids=ident)
def test_help_ends_with_an_example(item):
    path, command = item
    assert command.help and command.help.strip(), f"`{' '.join(path)}` has no help"
    examples = example_of(command.help)
    assert examples, f"the help of `{' '.join(path)}` does not end with an 'Example:' paragraph"
    prefix = " ".join(path) if len(path) > 1 else "cqia"
    assert all(line.startswith(prefix) for line in examples), \
        f"the example of `{' '.join(path)}` must run it: {examples}"
    result = CliRunner().invoke(cli, [*path[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert examples[0] in result.output  # click shows it (a "\b" keeps its line breaks)


@pytest.mark.parametrize("item", COMMANDS, ids=ident)
def test_every_option_says_what_it_does(item):
    path, command = item
    silent = [p.opts[0] for p in command.params if isinstance(p, click.Option) and not p.help]
    assert not silent, f"`{' '.join(path)}` options without help: {silent}"


def json_cases():
    for path, command in LEAVES:
        name = " ".join(path)
        if name in NO_JSON:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=MISSING_JSON[name])] if name in MISSING_JSON else []
        yield pytest.param(path, command, id=name, marks=marks)


@pytest.mark.parametrize(("path", "command"), list(json_cases()))
def test_machine_readable_output_has_json(path, command):
    flags = {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    assert "--json" in flags, (f"`{' '.join(path)}` has no --json; add it, or list the command in NO_JSON "
                               "with the reason no program reads its output")


def test_the_exemptions_name_real_commands():
    names = {" ".join(path) for path, _ in LEAVES}
    assert set(NO_JSON) <= names and set(MISSING_JSON) <= names
    assert not set(NO_JSON) & set(MISSING_JSON)


def test_a_command_without_an_example_is_caught():
    @click.command()
    def bare():
        """Does something."""

    assert example_of(bare.help) == []
    assert example_of("Does something.\n\n\b\nExample:\n    cqia bare --x 1\n") == ["cqia bare --x 1"]


def test_counts_in_messages_say_one_thing_and_many_things():
    from cqia.common.text import counted

    assert [counted(n, "record") for n in (0, 1, 2)] == ["0 records", "1 record", "2 records"]
    assert counted(1, "pending record") == "1 pending record"
    assert [counted(n, "category", "categories") for n in (1, 3)] == ["1 category", "3 categories"]
