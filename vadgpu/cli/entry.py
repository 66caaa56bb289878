"""The `vadgpu` command's entry point (console script and `python -m vadgpu`), kept free of imports.

Loading the command modules and torch takes a second or two; Ctrl-C then ends the command as it does anywhere
else, with exit status 130 and one line instead of a KeyboardInterrupt traceback.
"""

import sys


def main() -> None:
    try:
        from vadgpu.cli.main import main as run

        run()
    except KeyboardInterrupt:
        sys.stderr.write("\nInterrupted.\n")
        sys.exit(130)
