"""Mixture: the objective and the sample depend only on (seed, epoch, index); rates are honoured;
batches carry objective ids; bad configs name their key."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives_strategies import IDS, OFFSET, assert_sample_shape, char_decode, char_encode

from megatron_rrtf.config import load_config
from megatron_rrtf.config.objectives import ObjectivesConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.objectives.mixture import (
    OBJECTIVE_NAMES,
    ObjectiveMixture,
    collate,
    sample_rng,
)

ALL = {"causal": 0.25, "span": 0.25, "fim": 0.25, "prefix_lm": 0.25}
SEQ = 32


def packed_batch(b, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.integers(OFFSET, OFFSET + 40, size=(b, SEQ + 1))
    raw[rng.random(raw.shape) < 0.08] = IDS.eod
    return raw


def mixture(rates=ALL, seed=7):
    return ObjectiveMixture(ObjectivesConfig(rates=dict(rates)), IDS, SEQ, char_encode,
                            char_decode, seed=seed)


def same(a, b):
    return (a.objective == b.objective
            and all((getattr(a, k) == getattr(b, k)).all()
                    for k in ("tokens", "labels", "loss_mask", "doc_ids", "prefix_mask")))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**9)), min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_sample_depends_only_on_seed_epoch_index_not_call_order(keys, shuffler):
    raw = packed_batch(len(keys))
    first = [mixture().apply(r, e, i) for r, (e, i) in zip(raw, keys)]
    order = list(range(len(keys)))
    shuffler.shuffle(order)
    fresh = mixture()                 # a new instance, as after a resume, called in another order
    for j in order:
        again = fresh.apply(raw[j], *keys[j])
        assert same(first[j], again)
        assert_sample_shape(again, SEQ)


def test_same_samples_in_another_process():
    script = (
        "import numpy as np, sys; sys.path.insert(0, 'tests');"
        "from test_objectives_mixture import mixture, packed_batch;"
        "m = mixture(); raw = packed_batch(16);"
        "print([int(m.apply(r, 3, 1000 + i).tokens.sum()) for i, r in enumerate(raw)])"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                         text=True, check=True).stdout.strip()
    m, raw = mixture(), packed_batch(16)
    assert out == str([int(m.apply(r, 3, 1000 + i).tokens.sum()) for i, r in enumerate(raw)])


def test_rates_are_honoured_within_statistical_tolerance():
    rates = {"causal": 0.5, "span": 0.3, "fim": 0.2, "prefix_lm": 0.0}
    m = mixture(rates)
    n = 6000
    drawn = [m.choose(sample_rng(7, 0, i)) for i in range(n)]
    for name in OBJECTIVE_NAMES:
        p = rates[name]
        count = drawn.count(name)
        assert abs(count - n * p) <= 4 * np.sqrt(n * p * (1 - p)), (name, count)  # 0 if p == 0


def test_epoch_changes_the_draw_and_seed_changes_it_too():
    m, other = mixture(), mixture(seed=8)
    a = [m.choose(sample_rng(7, 0, i)) for i in range(64)]
    assert a != [m.choose(sample_rng(7, 1, i)) for i in range(64)]
    assert a != [other.choose(sample_rng(8, 0, i)) for i in range(64)]


def test_apply_batch_collates_with_objective_ids():
    m = mixture()
    raw = packed_batch(8)
    batch = m.apply_batch(raw, [2] * 8, list(range(100, 108)))
    assert batch["tokens"].shape == batch["labels"].shape == batch["loss_mask"].shape == (8, SEQ)
    assert batch["tokens"].dtype == np.int64 and batch["loss_mask"].dtype == np.float32
    assert batch["doc_ids"].shape == batch["prefix_mask"].shape == (8, SEQ)
    assert batch["objective_id"].shape == (8,)
    samples = [m.apply(r, 2, 100 + i) for i, r in enumerate(raw)]
    expected = collate(samples)
    for key in expected:
        assert (batch[key] == expected[key]).all()
    assert [OBJECTIVE_NAMES[i] for i in batch["objective_id"]] == [s.objective for s in samples]


def test_fim_without_tokenizer_names_the_key():
    with pytest.raises(ConfigError, match="objectives.rates.fim"):
        ObjectiveMixture(ObjectivesConfig(rates={"fim": 1.0}), IDS, SEQ)
    ObjectiveMixture(ObjectivesConfig(rates={"span": 1.0}), IDS, SEQ)   # no tokenizer needed


@pytest.mark.parametrize("rates, fragment", [
    ({"causal": 1.0, "mlm": 1.0}, "objectives.rates.mlm is not an objective"),
    ({"causal": -1.0}, "objectives.rates.causal=-1.0 must be >= 0"),
    ({"causal": 0.0}, "objectives.rates must give at least one"),
])
def test_bad_rates_name_the_key(rates, fragment):
    with pytest.raises(ConfigError) as info:
        ObjectivesConfig(rates=rates).validate()
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", ["causal", "span", "fim", "prefix_lm", "codegen2_mix"])
def test_objective_presets_merge_over_the_tiny_model(name):
    config = load_config(["configs/tiny.yaml", f"configs/objectives/{name}.yaml"])
    probabilities = dict(zip(OBJECTIVE_NAMES, config.objectives.probabilities()))
    if name in OBJECTIVE_NAMES:
        assert probabilities[name] == 1.0
    else:
        assert probabilities["causal"] == probabilities["span"] == 0.5
    m = ObjectiveMixture(config.objectives, IDS, config.model.seq_length, char_encode,
                         char_decode, seed=config.train.seed)
    raw = np.arange(OFFSET, OFFSET + config.model.seq_length + 1)
    assert_sample_shape(m.apply(raw, 0, 0), config.model.seq_length)


def test_nested_objective_key_is_checked_on_load():
    with pytest.raises(ConfigError, match="objectives.span.max_spans=0"):
        load_config(["configs/tiny.yaml", "configs/objectives/span.yaml"],
                    ["objectives.span.max_spans=0"])
    with pytest.raises(ConfigError, match="unknown config key objectives.fim.rate"):
        load_config(["configs/tiny.yaml"], ["objectives.fim.rate=0.5"])
