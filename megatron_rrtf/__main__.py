"""`python -m megatron_rrtf` is the `mrrtf` command."""

from megatron_rrtf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
