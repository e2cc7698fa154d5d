"""`python -m mrrtf` is the `mrrtf` command."""

from mrrtf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
