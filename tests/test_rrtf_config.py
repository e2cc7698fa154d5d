"""RRTF config section: presets load, bad values name their key."""

import pytest

from megatron_rrtf.config import load_config
from megatron_rrtf.errors import ConfigError


def test_presets_load_with_published_settings():
    big = load_config("configs/rrtf/starcoder_15b.yaml")
    assert big.train.global_batch_size == 512 and big.train.train_steps == 6 * 132
    assert big.model.num_layers == 40 and big.model.num_query_groups == 1
    assert big.rrtf.loss == "rrtf" and big.rrtf.teachers[0].samples == 2
    demo = load_config("configs/rrtf/tiny_demo.yaml")
    assert demo.model.num_layers == 2                       # from the base tiny.yaml
    assert demo.rrtf.teachers[0].kind == "jsonl" and demo.rrtf.min_ft_score == 3.0


@pytest.mark.parametrize("override, fragment", [
    ("rrtf.loss=ppo", "rrtf.loss='ppo' is not one of"),
    ("rrtf.rank_weight=-1", "rrtf.rank_weight and rrtf.sft_weight must be >= 0"),
    ("rrtf.decontam_threshold=0", "rrtf.decontam_threshold=0.0 must be in (0, 1]"),
    ("rrtf.student={samples: 3, temperatures: [0.2, 0.8]}", "rrtf.student.samples=3 must be a multiple"),
    ("rrtf.student.top_p=1.5", "rrtf.student.top_p=1.5"),
    ("rrtf.teachers=[{name: a, path: ''}]", "rrtf.teachers[0].path is empty"),
    ("rrtf.teachers=[{name: a, path: x, kind: api}]", "rrtf.teachers[0].kind='api'"),
    ("rrtf.teachers=[{name: a, path: x}, {name: a, path: y}]", "rrtf.teachers[1].name='a' is used twice"),
    ("rrtf.prompt_template=hello", "rrtf.prompt_template must contain {instruction}"),
    ("rrtf.bogus=1", "unknown config key rrtf.bogus"),
    ("rrtf.sample.backend=tgi", "rrtf.sample.backend='tgi' is not one of"),
    ("rrtf.sample.device=tpu", "rrtf.sample.device='tpu' is not one of"),
    ("rrtf.sample.dtype=int8", "rrtf.sample.dtype='int8' is not one of"),
    ("rrtf.sample.tensor_parallel=2", "tensor_parallel=2 needs rrtf.sample.backend=vllm"),
    ("rrtf.sample={backend: vllm, device: cpu}", "rrtf.sample.backend=vllm runs on CUDA only"),
    ("rrtf.sample_chunk=0", "rrtf.sample_chunk=0 must be >= 1"),
    ("rrtf.executor=dask", "rrtf.executor='dask' is not one of"),
    ("rrtf.ray_address=auto", "rrtf.ray_address='auto' is set but rrtf.executor=local"),
    ("rrtf.verdict_workers=0", "rrtf.verdict_workers=0 must be >= 1"),
])
def test_bad_rrtf_values_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("configs/rrtf/tiny_demo.yaml", [override])
    assert fragment in str(info.value)
