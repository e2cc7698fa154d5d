"""Peak memory of `mrrtf export` (streamed layer by layer into shards) against exporting the
whole model at once (build the TP=1 model, load the checkpoint, convert the state dict, write one
file: what export did before), on the same checkpoint in the same run.

Each export runs in a fresh process; its peak resident memory (VmHWM) is reported, and the
same for a process that only imports and sets up the process groups (the floor neither can go
below). Claim: the streamed export's peak above that floor is about one layer plus one shard,
not the model.

    python benchmarks/bench_export_memory.py [--layers 8] [--hidden 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 32000
MB = 2 ** 20


def _peak_mb() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would carry the parent's peak
    across fork + exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024                             # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, step: str, out: str, shard: str) -> None:
    """One measured export in this fresh process; prints {"peak_mb", "seconds"}."""
    import dataclasses

    import torch

    from megatron_rrtf.config import ParallelConfig
    from megatron_rrtf.convert.export import export_checkpoint, load_step_config
    from megatron_rrtf.parallel.init import process_groups

    start = time.perf_counter()
    if mode == "ours":
        export_checkpoint(step, out, max_shard_size=shard)
    else:
        config = load_step_config(Path(step))
        single = dataclasses.replace(config, parallel=ParallelConfig())
        with process_groups(single.parallel, 0):
            import transformers.models.gpt_bigcode  # noqa: F401  (both exports load it)

            if mode == "whole":
                from safetensors.torch import save_file

                from megatron_rrtf.checkpoint.model_io import load_model
                from megatron_rrtf.convert import gpt_bigcode
                from megatron_rrtf.model.build import build_gpt_model

                model = build_gpt_model(single, config.model.padded_vocab_size(VOCAB))
                load_model(model, step)
                state = {k: v for k, v in model.state_dict().items() if torch.is_tensor(v)}
                hf = gpt_bigcode.to_hf(state, config.model, VOCAB)
                Path(out).mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in hf.items()},
                          str(Path(out) / "model.safetensors"))
    print(json.dumps({"peak_mb": _peak_mb(), "seconds": time.perf_counter() - start}))


def make_checkpoint(root: Path, layers: int, hidden: int) -> Path:
    """A random starcoder-family checkpoint (fp32, real vocabulary size VOCAB) and its tokenizer."""
    sys.path.insert(0, str(ROOT / "tests"))
    import yaml
    from conftest import tiny_training_texts

    from megatron_rrtf.checkpoint.model_io import save_model
    from megatron_rrtf.config import load_config
    from megatron_rrtf.model.build import build_gpt_model
    from megatron_rrtf.parallel.init import process_groups
    from megatron_rrtf.tokenizer.train import train_tokenizer_from_texts

    tok = train_tokenizer_from_texts(tiny_training_texts(), 1200, root / "tok")
    config = load_config("configs/tiny.yaml", [
        f"model.num_layers={layers}", f"model.hidden_size={hidden}",
        "model.num_attention_heads=8", "model.num_query_groups=1", "model.seq_length=512",
        f"model.vocab_size={VOCAB}", "train.precision=fp32", f"data.tokenizer={tok}"])
    step = root / "run" / "checkpoints" / "step_00000001"
    with process_groups(config.parallel, 0):
        model = build_gpt_model(config, config.model.padded_vocab_size(VOCAB))
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        save_model(model, step)
    (step / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    print(f"checkpoint: {layers} layers, hidden {hidden}, vocab {VOCAB}, fp32: "
          f"{weights / MB:.0f} MB of weights")
    return step


def measure(mode: str, step: Path, out: Path, shard: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", mode, str(step), str(out), shard],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-shard-size", default="100MB")
    p.add_argument("--child", nargs=4, metavar=("MODE", "STEP", "OUT", "SHARD"))
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        step = make_checkpoint(root, args.layers, args.hidden)
        runs: dict[str, list[dict]] = {"floor": [], "ours": [], "whole": []}
        for i in range(args.repeats):
            for mode in runs:                                     # interleaved: same load
                runs[mode].append(measure(mode, step, root / f"{mode}{i}", args.max_shard_size))
        peak = {m: [r["peak_mb"] for r in rs] for m, rs in runs.items()}
        for mode, values in peak.items():
            secs = [r["seconds"] for r in runs[mode]]
            print(f"{mode:>5}: peak RSS {statistics.median(values):.0f} MB "
                  f"(runs {', '.join(f'{v:.0f}' for v in values)}), "
                  f"{statistics.median(secs):.1f} s")
        floor = statistics.median(peak["floor"])
        ours = statistics.median(peak["ours"]) - floor
        whole = statistics.median(peak["whole"]) - floor
        print(f"peak above the floor (imports + process groups), --max-shard-size "
              f"{args.max_shard_size}: ours {ours:.0f} MB, baseline {whole:.0f} MB, "
              f"ratio {ours / whole:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
