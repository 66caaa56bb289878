"""`python -m vadgpu ...` runs the CLI (torchrun uses this form)."""

from vadgpu.cli.entry import main

if __name__ == "__main__":
    main()
