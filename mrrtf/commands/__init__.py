"""Sub-commands of `mrrtf`, one module each (see mrrtf.cli.COMMANDS)."""
