"""Comma-separated flags are parsed one way by every command, and a bad one names its flag."""

import pytest

from megatron_rrtf.errors import ConfigError
from mrrtf.commands.arglists import csv_ints, csv_items


def test_items_are_stripped_and_empty_ones_ignored():
    assert csv_items(" humaneval, infill,,") == ("humaneval", "infill")
    assert csv_items("") == ()


def test_integers_parse_and_bad_or_empty_items_name_the_flag():
    assert csv_ints("1, 10", "--ks") == (1, 10)
    for bad in ("1,x", "1,,10", ""):
        with pytest.raises(ConfigError, match="--seeds must be comma-separated integers"):
            csv_ints(bad, "--seeds")
