"""Config tree: YAML + overrides build typed sections; every bad value names its key."""

import pytest

from megatron_rrtf.config import RunConfig, load_config
from megatron_rrtf.config.loader import parse_override
from megatron_rrtf.errors import ConfigError


def test_tiny_config_loads_and_override_applies():
    cfg = load_config("configs/tiny.yaml", ["model.num_layers=4", "train.lr=1e-3"])
    assert cfg.model.num_layers == 4
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.model.num_query_groups == 1


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.num_attention_heads=6", "model.num_attention_heads=6"),
        ("parallel.tensor_parallel=3", "parallel.tensor_parallel=3"),
        ("model.num_layers=three", "model.num_layers='three' must be an integer"),
        ("model.family=gpt2", "model.family='gpt2' is not one of"),
        ("model.bogus=1", "unknown config key model.bogus"),
        ("train.global_batch_size=10", "train.global_batch_size=10 is not divisible"),
        ("parallel.pipeline_parallel=3", "model.num_layers=2 is not divisible by parallel.pipeline_parallel=3"),
        ("train.min_lr=1.0", "train.min_lr=1.0"),
    ],
)
def test_bad_value_names_the_key(override, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        load_config("configs/tiny.yaml", [override])
    assert fragment in str(info.value)


def test_heads_not_divisible_by_tensor_parallel_is_named():
    with pytest.raises(ConfigError) as info:
        load_config("configs/tiny.yaml", ["model.num_attention_heads=6", "model.hidden_size=384",
                                          "parallel.tensor_parallel=4"])
    assert str(info.value) == (
        "model.num_attention_heads=6 is not divisible by parallel.tensor_parallel=4")


def test_global_batch_checked_against_data_parallel_world():
    cfg = load_config("configs/tiny.yaml", ["train.micro_batch_size=4", "train.global_batch_size=4"])
    with pytest.raises(ConfigError, match="data-parallel size 2"):
        cfg.validate(world_size=2)
    assert cfg.validate(world_size=1).num_microbatches(1) == 1


def test_override_requires_equals_and_parses_yaml_values():
    assert parse_override("a.b=[1, 2]") == {"a": {"b": [1, 2]}}
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("model.num_layers")


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_base_key_merges_parent_file(tmp_path):
    (tmp_path / "parent.yaml").write_text("model:\n  num_layers: 6\n  hidden_size: 96\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nmodel:\n  num_layers: 3\n  num_layers: 3\n")
    cfg = load_config(tmp_path / "child.yaml", ["model.num_attention_heads=3"])
    assert (cfg.model.num_layers, cfg.model.hidden_size) == (3, 96)


def test_defaults_are_valid():
    RunConfig().validate(world_size=1)
