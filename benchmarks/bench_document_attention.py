"""Claim: keeping documents apart (data.document_attention=separate) costs at most 1.15x the step
time of letting them see each other (packed), on CPU, tiny and ~100M shapes at seq 1024.

Same model, same weights, same packed batch (documents of lognormal lengths, median ~250 tokens,
the built-in corpus's scale), forward + backward, median of the repeats; packed is plain causal
attention (SDPA's is_causal path), separate is the block-diagonal causal mask of the documents.

    python benchmarks/bench_document_attention.py [--shapes tiny,100m] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_seconds, report  # noqa: E402

from megatron_rrtf.config import ParallelConfig, load_config  # noqa: E402
from megatron_rrtf.model.build import build_gpt_model  # noqa: E402
from megatron_rrtf.model.documents import DocumentAttention  # noqa: E402
from megatron_rrtf.parallel.init import process_groups, set_seed  # noqa: E402

SEQ, VOCAB = 1024, 8000
SHAPES = {"tiny": (2, 128, 4, 4), "100m": (12, 768, 12, 1)}
"""name -> (layers, hidden, heads, micro batch)."""


def packed_doc_ids(batch: int, seed: int = 0, seq: int = SEQ) -> np.ndarray:
    """[b, seq] document ids: lognormal document lengths (median ~250 tokens), cut at seq."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batch):
        lengths = []
        while sum(lengths) < seq:
            lengths.append(max(1, int(rng.lognormal(np.log(250), 1.0))))
        rows.append(np.repeat(np.arange(len(lengths)), lengths)[:seq])
    return np.stack(rows).astype(np.int32)


def step_times(layers: int, hidden: int, heads: int, batch: int, repeats: int):
    cfg = load_config("configs/tiny.yaml", [f"model.num_layers={layers}",
                                            f"model.hidden_size={hidden}",
                                            f"model.num_attention_heads={heads}",
                                            f"model.seq_length={SEQ}"])
    set_seed(0)
    model = build_gpt_model(cfg, cfg.model.padded_vocab_size(VOCAB))
    tokens = torch.randint(0, VOCAB, (batch, SEQ), generator=torch.Generator().manual_seed(0))
    doc_ids = packed_doc_ids(batch)
    no_prefix = np.zeros_like(doc_ids, dtype=bool)
    times = {}
    for mode in ("packed", "separate"):
        def step(mode=mode):
            layout = DocumentAttention.build(doc_ids, no_prefix, mode == "separate")
            model.zero_grad(set_to_none=True)
            model(tokens, layout.position_ids, layout.model_mask(),
                  labels=tokens).float().mean().backward()
        times[mode] = median_seconds(step, repeats=repeats, warmup=1)
    docs = int(sum(len(np.unique(r)) for r in doc_ids))
    return times, docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="tiny,100m")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, seq {SEQ}")
    for name in args.shapes.split(","):
        layers, hidden, heads, batch = SHAPES[name]
        times, docs = step_times(layers, hidden, heads, batch, args.repeats)
        report(f"{name} fwd+bwd step, batch {batch}, {docs} documents (s/step, lower is better; "
               f"goal ratio >= 0.87, i.e. separate <= 1.15x packed)", times["separate"],
               times["packed"], "s", higher_is_better=False)


if __name__ == "__main__":
    with process_groups(ParallelConfig(), seed=0):
        main()
