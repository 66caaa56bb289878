"""`vadgpu --help` and `--version` start without importing torch; every command of the lazy group loads."""

from __future__ import annotations

import subprocess
import sys

import click

from vadgpu.cli.main import COMMANDS, cli


def test_help_and_version_import_no_torch():
    script = ("import sys\nfrom vadgpu.cli.main import cli\nfor args in (['--help'], ['--version']):\n"
              "    try:\n        cli.main(args, prog_name='vadgpu')\n    except SystemExit:\n        pass\n"
              "print('torch loaded:', 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Commands:" in done.stdout and "calibrate" in done.stdout and "version" in done.stdout
    assert done.stdout.strip().endswith("torch loaded: False")


def test_every_listed_command_loads_with_its_name():
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert isinstance(command, click.Command) and command.name == name
    assert cli.get_command(context, "nonsense") is None
