"""The README's examples are run and their documented output checked, so the README cannot drift from the code."""

import doctest
import re
from pathlib import Path

import pytest

from tools.readme_examples import README, examples, run_command

TEXT = README.read_text(encoding="utf-8")


@pytest.mark.parametrize("command,stdin_text,documented", examples(TEXT), ids=lambda v: str(v)[:40])
def test_console_example_output_is_what_the_readme_says(command, stdin_text, documented):
    assert run_command(command, stdin_text).rstrip("\n") == documented.rstrip("\n")


def test_there_are_console_examples():
    assert len(examples(TEXT)) >= 4


def test_python_examples_pass_as_doctests():
    parser = doctest.DocTestParser()
    test = parser.get_doctest(TEXT, {}, "README.md", str(README), 0)
    assert len(test.examples) >= 5
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    setup = TEXT.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, re.DOTALL)
    assert len(commands) == 2
    run_cmd, test_cmd = commands
    assert "translate-prompt" in run_cmd and "pip install" in run_cmd
    assert "pytest" in test_cmd and "pip install" in test_cmd
    ci = (Path(README).parent / ".ci" / "run").read_text()
    assert test_cmd in ci
