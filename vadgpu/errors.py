"""The one error type users see.

Library code raises `VadgpuError` with a message that names the file (or option) and what is wrong. It is a
`click.ClickException`, so the CLI prints `Error: <message>` and exits with status 1 instead of a traceback.
"""

import click


class VadgpuError(click.ClickException):
    """A problem with the user's input or environment, explained in one message."""
