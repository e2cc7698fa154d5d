"""Comma-separated command-line lists (`--ks 1,10`, `--tasks humaneval,infill`), parsed one way
by every command, with an error that names the flag."""

from __future__ import annotations


def csv_items(text: str) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c'): items stripped, empty ones ignored."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


def csv_ints(text: str, flag: str) -> tuple[int, ...]:
    """'1,10' -> (1, 10); anything else, an empty item included, is a ConfigError naming `flag`."""
    from megatron_rrtf.errors import ConfigError

    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated integers, got {text!r}") from None
