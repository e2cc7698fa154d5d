"""Sub-commands of `mrrtf`, one module each (see megatron_rrtf.cli.COMMANDS)."""
