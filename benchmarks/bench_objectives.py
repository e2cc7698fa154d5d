"""Objective transforms vs the tiny model's training step, on CPU.

Claim (issue 4): turning one micro batch of packed samples into training samples (the
ObjectiveMixture, any objective) costs <= 5% of the tiny model's forward+backward on that batch
(configs/tiny.yaml: micro batch 8, seq 256, vocab ~8k). Prints, per objective and for CodeGen2's
causal/span mix, `ours <transform s/batch>, baseline <fwd+bwd s/step>, ratio <ours/baseline>`.
FIM is timed with a pure-Python char-level tokenizer (sentencepiece's C++ encode is faster).
Run: python benchmarks/bench_objectives.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))   # this checkout's package
from common import median_seconds  # noqa: E402

from megatron_rrtf.config import load_config  # noqa: E402
from megatron_rrtf.config.objectives import ObjectivesConfig  # noqa: E402
from megatron_rrtf.objectives import ObjectiveMixture  # noqa: E402
from megatron_rrtf.tokenizer.special_tokens import NUM_MASK_SENTINELS, SpecialTokenIds  # noqa: E402

VOCAB = 8000
IDS = SpecialTokenIds(eod=0, pad=1, sep=2, eom=3, fim_prefix=4, fim_middle=5, fim_suffix=6,
                      fim_pad=7, masks=tuple(range(8, 8 + NUM_MASK_SENTINELS)))
OFFSET = 8 + NUM_MASK_SENTINELS


def encode(text: str) -> list[int]:
    return [ord(c) + OFFSET for c in text]


def decode(ids) -> str:
    return "".join(chr(i - OFFSET) for i in ids)


def packed_batch(batch: int, seq: int, mean_doc: int = 120) -> np.ndarray:
    """[batch, seq + 1] random tokens with EOD about every mean_doc tokens."""
    rng = np.random.default_rng(0)
    raw = rng.integers(OFFSET, VOCAB, size=(batch, seq + 1))
    raw[rng.random(raw.shape) < 1 / mean_doc] = IDS.eod
    return raw


def transform_time(rates: dict[str, float], cfg, raw: np.ndarray) -> float:
    objectives = ObjectivesConfig(rates=rates, span=cfg.objectives.span, fim=cfg.objectives.fim,
                                  prefix_lm=cfg.objectives.prefix_lm)
    mixture = ObjectiveMixture(objectives, IDS, cfg.model.seq_length, encode, decode, seed=1)
    b = len(raw)
    step = iter(range(10**9))

    def run():
        i = next(step)   # new sample indices every call: fresh draws, as in training
        mixture.apply_batch(raw, [0] * b, range(i * b, (i + 1) * b))

    return median_seconds(run, repeats=20, warmup=3)


def model_step_time(cfg, raw: np.ndarray) -> float | None:
    try:
        import torch

        from megatron_rrtf.model.build import build_gpt_model
        from megatron_rrtf.parallel.init import process_groups
    except ImportError as exc:
        print(f"megatron_rrtf.model not importable ({exc}); timing the transforms alone")
        return None
    with process_groups(cfg.parallel, seed=0):
        model = build_gpt_model(cfg, cfg.model.padded_vocab_size(VOCAB))
        tokens = torch.from_numpy(raw[:, :-1].copy())
        labels = torch.from_numpy(raw[:, 1:].copy())
        pos = torch.arange(tokens.shape[1])[None].expand(tokens.shape[0], -1)

        def step():
            model.zero_grad(set_to_none=True)
            model(tokens, pos, None, labels=labels).float().mean().backward()

        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
        return median_seconds(step)


def main() -> None:
    cfg = load_config("configs/tiny.yaml")
    batch, seq = cfg.train.micro_batch_size, cfg.model.seq_length
    raw = packed_batch(batch, seq)
    print(f"micro batch {batch}, seq {seq}, vocab {VOCAB}, ~{seq // 120 + 1} documents/sample")
    baseline = model_step_time(cfg, raw)
    cases = {name: {name: 1.0} for name in ("causal", "span", "fim", "prefix_lm")}
    cases["codegen2_mix (causal 0.5, span 0.5)"] = {"causal": 0.5, "span": 0.5}
    for name, rates in cases.items():
        ours = transform_time(rates, cfg, raw)
        if baseline is None:
            print(f"objective transforms, {name} (s/batch): ours {ours:.4g} s, "
                  "baseline n/a (no model), ratio n/a", flush=True)
        else:
            print(f"objective transforms, {name} (s/batch vs tiny fwd+bwd s/step): "
                  f"ours {ours:.4g} s, baseline {baseline:.4g} s, ratio {ours / baseline:.4f} "
                  f"(goal <= 0.05)", flush=True)


if __name__ == "__main__":
    main()
