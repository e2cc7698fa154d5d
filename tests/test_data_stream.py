"""Training/eval streams: exact resume (mid-epoch and across an epoch boundary), DP slices
disjoint and complete, weights honoured, each epoch a permutation, epochs differ."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megatron_rrtf.data.blend import blend_indices, effective_epochs
from megatron_rrtf.data.packing import build_epoch_index, samples_per_epoch
from megatron_rrtf.data.stream import build_eval_streams, build_train_stream
from megatron_rrtf.errors import DataError

SEQ = 32


def batches(stream, n, micro=4):
    return [stream.next_batch(micro) for _ in range(n)]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_batch_shapes_and_types(tiny_data_config, tiny_tokenizer):
    stream = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 100)
    batch = stream.next_batch(3)
    assert batch["tokens"].shape == (3, SEQ + 1)
    for key in ("tokens", "sample_index", "epoch", "source_id"):
        assert batch[key].dtype == np.int64
    assert batch["sample_index"].tolist() == [0, 1, 2]
    assert stream.source_names == ["py", "prose"]
    assert set(batch["source_id"].tolist()) <= {0, 1}
    assert stream.state_dict() == {"consumed_samples": 3, "seed": tiny_data_config.data.seed}
    text = tiny_tokenizer.decode(batch["tokens"][0].tolist())
    assert len(text) > 20


def test_resume_mid_epoch_is_bit_exact(tiny_data_config, tiny_tokenizer):
    a = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 400)
    batches(a, 7)
    state = a.state_dict()
    expected = batches(a, 5)
    b = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 400)
    b.load_state_dict(dict(state))
    assert_same(batches(b, 5), expected)
    # a run extended to more samples replays the same order (the blend is prefix-stable)
    longer = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 900)
    longer.load_state_dict(dict(state))
    assert_same(batches(longer, 5), expected)


def test_resume_across_epoch_boundary_is_bit_exact(tiny_data_config, tiny_tokenizer):
    a = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 2000)
    states, seen = [], []
    while True:
        states.append(a.state_dict())
        batch = a.next_batch(4)
        seen.append(batch)
        if batch["epoch"].max() >= 1:
            break
    # resume two batches before the first epoch-1 sample, read across the boundary
    b = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 2000)
    b.load_state_dict(states[-3])
    resumed = batches(b, 4)
    assert_same(resumed[:3], seen[-3:])
    assert_same(resumed[3:], [a.next_batch(4)])
    assert resumed[0]["epoch"].max() == 0 and resumed[2]["epoch"].max() == 1


def test_resume_refuses_another_seed(tiny_data_config, tiny_tokenizer):
    stream = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 10)
    with pytest.raises(DataError, match="data.seed"):
        stream.load_state_dict({"consumed_samples": 4, "seed": 999})


def test_dp2_slices_are_disjoint_complete_and_match_dp1(tiny_data_config, tiny_tokenizer):
    micro, accumulation, steps = 3, 2, 5
    ranks = [build_train_stream(tiny_data_config, tiny_tokenizer, r, 2, 200) for r in range(2)]
    single = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 200)
    seen: dict[int, np.ndarray] = {}
    for _ in range(steps * accumulation):
        for rank in ranks:
            batch = rank.next_batch(micro)
            for idx, tokens in zip(batch["sample_index"], batch["tokens"]):
                assert int(idx) not in seen
                seen[int(idx)] = tokens
    global_batch = micro * accumulation * 2
    assert sorted(seen) == list(range(steps * global_batch))
    for idx, tokens in seen.items():
        np.testing.assert_array_equal(single.sample(idx)[0], tokens)


def test_weights_are_honoured(tiny_data_config, tiny_tokenizer):
    stream = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 2000)
    sources = np.concatenate([b["source_id"] for b in batches(stream, 250, micro=8)])
    share = np.bincount(sources, minlength=2) / len(sources)
    assert share[0] == pytest.approx(0.75, abs=0.01)  # weights 3 : 1
    epochs = stream.effective_epochs
    for sid, name in enumerate(stream.source_names):
        n = stream.splits[sid].samples_per_epoch
        assert epochs[name] == pytest.approx(np.sum(sources == sid) / n)
    # the small prose source is seen several times while the code is not exhausted
    assert epochs["prose"] > 1 > epochs["py"]


@settings(max_examples=80, deadline=None)
@given(weights=st.lists(st.floats(0.01, 10), min_size=1, max_size=5),
       size=st.integers(1, 3000))
def test_blend_counts_stay_close_to_the_weights(weights, size):
    source, count = blend_indices(weights, size)
    w = np.asarray(weights) / sum(weights)
    counts = np.bincount(source, minlength=len(weights))
    # the greedy "largest deficit" rule keeps every count within 2 of its share (<= 5 sources)
    assert np.all(np.abs(counts - w * size) < 2.0)
    # the running count per source is 0, 1, 2, ... in order
    for s in range(len(weights)):
        assert count[source == s].tolist() == list(range(counts[s]))
    # prefix-stable: a longer blend starts with the shorter one
    longer, _ = blend_indices(weights, size + 17)
    assert np.array_equal(longer[:size], source)
    eff = effective_epochs(weights, [10] * len(weights), size)
    assert sum(eff) * 10 == pytest.approx(size)


def test_each_epoch_uses_every_sample_once_and_epochs_differ(tiny_data_config, tiny_tokenizer):
    stream = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 2000)
    prose = stream.source_names.index("prose")
    n = stream.splits[prose].samples_per_epoch
    by_epoch: dict[int, list[tuple]] = {0: [], 1: []}
    while len(by_epoch[1]) < n:
        batch = stream.next_batch(8)
        for tokens, sid, epoch in zip(batch["tokens"], batch["source_id"], batch["epoch"]):
            if sid == prose and epoch in by_epoch:
                by_epoch[int(epoch)].append(tuple(tokens.tolist()))
    by_epoch[1] = by_epoch[1][:n]
    assert len(by_epoch[0]) == n
    for epoch, samples in by_epoch.items():
        index = build_epoch_index(stream.splits[prose].doc_lengths, SEQ,
                                  tiny_data_config.data.seed, prose, epoch)
        from megatron_rrtf.data.packing import packed_sample

        all_samples = [tuple(packed_sample(stream.splits[prose].dataset, index, i).tolist())
                       for i in range(n)]
        assert sorted(samples) == sorted(all_samples)  # none repeated, none skipped
    assert by_epoch[0] != by_epoch[1]


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 50), min_size=1, max_size=40),
       seq=st.integers(2, 40), epoch=st.integers(0, 3))
def test_packing_concatenates_the_shuffled_documents(lengths, seq, epoch):
    class Docs:  # document d holds tokens d*1000 + 0..len-1
        def get(self, d, offset=0, length=None):
            doc = np.arange(lengths[d]) + d * 1000
            return doc[offset:offset + length if length is not None else None]

    total = sum(lengths)
    if samples_per_epoch(total, seq) < 1:
        with pytest.raises(ValueError):
            build_epoch_index(np.array(lengths), seq, 7, 0, epoch)
        return
    from megatron_rrtf.data.packing import packed_sample

    index = build_epoch_index(np.array(lengths), seq, 7, 0, epoch)
    assert sorted(index.sample_order.tolist()) == list(range(samples_per_epoch(total, seq)))
    stream = np.concatenate([Docs().get(int(d)) for d in index.doc_order])
    for i in range(index.num_samples):
        sample = packed_sample(Docs(), index, i)
        assert sample.tolist() == stream[i * seq:i * seq + seq + 1].tolist()


def test_eval_streams_per_domain_split_over_dp(tiny_data_config, tiny_tokenizer):
    streams = build_eval_streams(tiny_data_config, tiny_tokenizer, 0, 1)
    assert set(streams) == {"code/python", "nl"}
    for domain, stream in streams.items():
        full = [s.tolist() for s in stream]
        assert len(full) == len(stream) > 0
        assert all(len(s) == SEQ + 1 for s in full)
        assert [s.tolist() for s in stream] == full  # re-iterable, same order
        shares = [list(build_eval_streams(tiny_data_config, tiny_tokenizer, r, 2)[domain])
                  for r in range(2)]
        assert len(shares[0]) + len(shares[1]) == len(full)
        interleaved = [None] * len(full)
        interleaved[0::2] = [s.tolist() for s in shares[0]]
        interleaved[1::2] = [s.tolist() for s in shares[1]]
        assert interleaved == full


def test_stream_refuses_data_from_another_tokenizer(tiny_data_config, tmp_path):
    from megatron_rrtf.tokenizer import load_tokenizer
    from megatron_rrtf.tokenizer.train import train_tokenizer_from_texts

    other = load_tokenizer(train_tokenizer_from_texts(["def f(): pass\n" * 50 + "xyz"], 300,
                                                      tmp_path / "other"))
    with pytest.raises(DataError, match="was tokenized with .*rerun `mrrtf preprocess`"):
        build_train_stream(tiny_data_config, other, 0, 1, 10)


def test_stream_refuses_unknown_or_changed_sources(tiny_data_config, tiny_tokenizer):
    data = tiny_data_config.data
    renamed = dataclasses.replace(tiny_data_config, data=dataclasses.replace(
        data, sources=[dataclasses.replace(data.sources[0], name="other")]))
    with pytest.raises(DataError, match="source other is not in"):
        build_train_stream(renamed, tiny_tokenizer, 0, 1, 10)
    changed = dataclasses.replace(tiny_data_config, data=dataclasses.replace(
        data, sources=[dataclasses.replace(data.sources[0], glob="a*.py")]))
    with pytest.raises(DataError, match="source py changed since it was preprocessed"):
        build_train_stream(changed, tiny_tokenizer, 0, 1, 10)
    reweighted = dataclasses.replace(tiny_data_config, data=dataclasses.replace(
        data, sources=[dataclasses.replace(data.sources[0], weight=0.5), data.sources[1]]))
    build_train_stream(reweighted, tiny_tokenizer, 0, 1, 10)  # weights need no re-preprocess


def test_source_smaller_than_one_sample_is_refused(tiny_data_config, tiny_tokenizer):
    long_context = dataclasses.replace(
        tiny_data_config, model=dataclasses.replace(tiny_data_config.model, seq_length=10**7))
    with pytest.raises(DataError, match="fewer than one sample of model.seq_length"):
        build_train_stream(long_context, tiny_tokenizer, 0, 1, 10)


def test_loader_is_fast(tiny_data_config, tiny_tokenizer):
    stream = build_train_stream(tiny_data_config, tiny_tokenizer, 0, 1, 5000)
    start = time.perf_counter()
    batches(stream, 100, micro=8)
    assert time.perf_counter() - start < 1.0  # 800 samples; a tiny-model step is ~50 ms
