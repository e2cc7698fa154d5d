"""Claim (issue 18, PanGu-Coder2's Table 4 for our models): the same exported model served
through CTranslate2 int8 is faster per generated token and smaller on disk than transformers
fp32, with held-out pass@1 within the seed spread. Goal: >= 3x faster, <= 0.3x weight memory.

For one HF model directory, each row is measured in a fresh subprocess (so peak RSS is that
row's alone) through the one generation path (`Generator.load`, which picks CTranslate2 for a
CTranslate2 dir):
  weights MiB       the weight file on disk (model.safetensors / model.bin)
  peak RSS MiB      the process's maximum RSS after loading and timing, and its growth over the
                    RSS before loading the model (torch, transformers and ctranslate2 already
                    imported; the growth still holds transformers' lazily imported model code
                    and the allocators' pools, ~200 MiB even for the 2.4M demo model)
  ms/token b=1      wall time / generated tokens, one prompt at a time (prompt processing
                    included), greedy, up to --new-tokens, no stop strings
  ms/token b=16     the same with 16 prompts per call (wall time / all generated tokens)
  pass@1            held-out greedy pass@1 (`align.evaluate.heldout_metrics`: RRTF prompts,
                    stop markers, sandbox), only with --problems and --rrtf-config
Rows: HF fp32, CTranslate2 float32, CTranslate2 int8 (+ HF bf16, CT2 float16 / int8_float16
when CUDA is present). Timing rounds alternate the rows; the table gives the median and the
min-max over rounds, ratios are against HF fp32's medians of the same run.

    python benchmarks/bench_quantized.py --model HF_OR_CHECKPOINT_DIR [--problems P.jsonl
        --rrtf-config RUN/config.yaml] [--rounds 3] [--threads 1] [--out-dir DIR]
    python benchmarks/bench_quantized.py --random-100m --tokenizer-from HF_DIR
    (a randomly initialised 91M-parameter GPTBigCode, MQA, 14 layers x 768, with that
    directory's tokenizer; speed and memory only)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def weights_mib(model_dir: Path) -> float:
    names = ("model.safetensors", "model.bin", "pytorch_model.bin")
    return sum((model_dir / n).stat().st_size for n in names if (model_dir / n).is_file()) / 2**20


def measure_row(spec: dict) -> dict:
    """In the row's own process: load, time batch 1 and batch 16, peak RSS, optional pass@1."""
    import torch

    torch.set_num_threads(spec["threads"])
    import transformers  # noqa: F401  (imported before `before`: shared by every row)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    from megatron_rrtf.generation.generator import Generator, Sampling

    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        pass
    before = rss_mib()
    generator = Generator.load(spec["dir"], device=spec["device"], dtype=spec["dtype"])
    problems = None
    if spec.get("problems"):
        from megatron_rrtf.rrtf.problems import load_problems

        problems, _ = load_problems(spec["problems"])
    cfg = None
    if spec.get("rrtf_config"):
        from megatron_rrtf.config import load_config

        cfg = load_config(spec["rrtf_config"]).rrtf
    prompts = _prompts(problems, cfg, 16)
    sampling = Sampling(max_new_tokens=spec["new_tokens"], batch_size=16)
    stop_ids = generator.eos_ids
    fitted, _ = generator.fit(prompts, sampling.max_new_tokens)

    def run(batch: list[list[int]]) -> int:
        new = generator.complete_batch(batch, sampling, stop_ids)
        return sum(len(_cut(n, stop_ids)) for n in new)

    run(fitted[:1])  # warm-up
    out = {}
    t0, tokens = time.perf_counter(), 0
    for p in fitted[:spec["b1_prompts"]]:
        tokens += run([p])
    out["ms_b1"] = 1000 * (time.perf_counter() - t0) / max(tokens, 1)
    t0 = time.perf_counter()
    tokens = run(fitted[:16])
    out["ms_b16"] = 1000 * (time.perf_counter() - t0) / max(tokens, 1)
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_growth"] = out["peak_rss"] - before
    if spec.get("passk") and problems is not None and cfg is not None:
        from align.evaluate import HeldoutEval, heldout_metrics

        sampler = generator.sampler(Sampling(
            max_new_tokens=cfg.student.max_new_tokens, top_p=cfg.student.top_p,
            batch_size=cfg.generation_batch_size, stop=tuple(cfg.stop_markers)))
        metrics = heldout_metrics(problems, sampler, cfg, HeldoutEval(seed=0))
        out["pass@1"] = metrics["heldout/pass@1 (greedy)"]
    return out


def _cut(ids, stop_ids):
    from megatron_rrtf.generation.stops import cut_at_stop_ids

    return cut_at_stop_ids(ids, stop_ids)


def _prompts(problems, cfg, n: int) -> list[str]:
    """The first n held-out prompts (the run's template) when given, else the first n
    HumanEval prompts."""
    if problems and cfg is not None:
        from megatron_rrtf.rrtf.problems import prompts_for

        prompts = prompts_for(problems[:n], cfg)
    else:
        from megatron_rrtf.eval.humaneval import load_problems

        prompts = [p["prompt"] for p in list(load_problems().values())[:n]]
    return (prompts * n)[:n]


def random_100m(tokenizer_from: Path, out: Path) -> Path:
    """A randomly initialised GPTBigCode (MQA, 91M parameters with an 8k vocabulary) with the
    given tokenizer."""
    import torch
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    from megatron_rrtf.convert.hf_tokenizer import fill_special_tokens
    from megatron_rrtf.tokenizer.hf_tokenizer import HF_TOKENIZER_FILES

    out.mkdir(parents=True, exist_ok=True)
    for name in HF_TOKENIZER_FILES:
        if (tokenizer_from / name).is_file():
            shutil.copy2(tokenizer_from / name, out / name)
    fill_special_tokens(out / "tokenizer_config.json")
    vocab = json.loads((tokenizer_from / "config.json").read_text())["vocab_size"]
    eos = json.loads((tokenizer_from / "config.json").read_text())["eos_token_id"]
    torch.manual_seed(0)
    config = GPTBigCodeConfig(vocab_size=vocab, n_positions=1024, n_embd=768, n_layer=14,
                              n_head=12, n_inner=3072, multi_query=True,
                              activation_function="gelu_pytorch_tanh", bos_token_id=eos,
                              eos_token_id=eos, pad_token_id=eos)
    model = GPTBigCodeForCausalLM(config)
    print(f"random model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters",
          flush=True)
    model.save_pretrained(str(out))
    return out


def rows_for(hf_dir: Path, work: Path, cuda: bool) -> list[tuple[str, Path, str]]:
    """(name, model dir, dtype) per row; CTranslate2 conversions are made here."""
    from megatron_rrtf.convert.ct2 import convert_to_ct2

    rows = [("HF fp32", hf_dir, "float32")]
    kinds = [("CT2 float32", "float32"), ("CT2 int8", "int8")]
    if cuda:
        rows.append(("HF bf16 (GPU)", hf_dir, "bfloat16"))
        kinds += [("CT2 float16 (GPU)", "float16"), ("CT2 int8_float16 (GPU)", "int8_float16")]
    for name, quantization in kinds:
        rows.append((name, convert_to_ct2(hf_dir, work / f"ct2_{quantization}", quantization),
                     "auto"))
    return rows


def _fmt(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:.3g}" if len(values) == 1 else f"{med:.3g} ({min(values):.3g}-{max(values):.3g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="HF model dir, or our run/step dir")
    parser.add_argument("--random-100m", action="store_true")
    parser.add_argument("--tokenizer-from", type=Path, help="HF dir whose tokenizer the random "
                                                            "model uses")
    parser.add_argument("--problems", type=Path, help="held-out problems JSONL (pass@1)")
    parser.add_argument("--rrtf-config", type=Path, help="the RRTF run's config.yaml (prompt "
                                                         "template, stop markers, max tokens)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--b1-prompts", type=int, default=4)
    parser.add_argument("--out-dir", type=Path, default=None, help="keep conversions here")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:  # child: one row
        print("ROW " + json.dumps(measure_row(json.loads(args.row))), flush=True)
        return

    import torch

    cuda = torch.cuda.is_available()
    work = args.out_dir or Path(tempfile.mkdtemp(prefix="bench_quantized_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.random_100m:
        hf_dir = random_100m(args.tokenizer_from, work / "hf_random_100m")
    else:
        from megatron_rrtf.convert.export_cache import hf_model_dir

        hf_dir = hf_model_dir(args.model)
    rows = rows_for(hf_dir, work, cuda)
    results: dict[str, list[dict]] = {name: [] for name, _, _ in rows}
    for r in range(args.rounds):
        for name, model_dir, dtype in rows:
            spec = {"dir": str(model_dir), "dtype": dtype, "threads": args.threads,
                    "device": "cuda" if cuda and "GPU" in name else "cpu",
                    "new_tokens": args.new_tokens, "b1_prompts": args.b1_prompts,
                    "problems": str(args.problems) if args.problems else None,
                    "rrtf_config": str(args.rrtf_config) if args.rrtf_config else None,
                    "passk": bool(r == 0 and args.problems and args.rrtf_config)}
            proc = subprocess.run([sys.executable, __file__, "--row", json.dumps(spec)],
                                  capture_output=True, text=True, env={**os.environ,
                                                                       "PYTHONPATH": str(ROOT)})
            line = next((x for x in proc.stdout.splitlines() if x.startswith("ROW ")), None)
            if proc.returncode or line is None:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name].append(json.loads(line[4:]))
            print(f"round {r + 1} {name}: {results[name][-1]}", flush=True)
    base = {k: statistics.median(x[k] for x in results["HF fp32"]) for k in ("ms_b1", "ms_b16")}
    base_w = weights_mib(hf_dir)
    print(f"\nmodel {hf_dir}, {args.rounds} rounds, {args.threads} thread(s), "
          f"{args.new_tokens} new tokens, {time.strftime('%Y-%m-%d')}")
    print("| row | weights MiB (x HF) | peak RSS MiB (growth) | ms/token b=1 (speed-up) "
          "| ms/token b=16 (speed-up) | held-out pass@1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, model_dir, _ in rows:
        rs = results[name]
        w = weights_mib(model_dir)
        b1 = [x["ms_b1"] for x in rs]
        b16 = [x["ms_b16"] for x in rs]
        passk = next((x["pass@1"] for x in rs if "pass@1" in x), None)
        print(f"| {name} | {w:.1f} ({w / base_w:.2f}x) | "
              f"{_fmt([x['peak_rss'] for x in rs])} ({_fmt([x['rss_growth'] for x in rs])}) | "
              f"{_fmt(b1)} ({base['ms_b1'] / statistics.median(b1):.2f}x) | "
              f"{_fmt(b16)} ({base['ms_b16'] / statistics.median(b16):.2f}x) | "
              f"{'–' if passk is None else f'{100 * passk:.1f}'} |")
    int8 = results["CT2 int8"]
    print()
    for key, label in (("ms_b1", "ms/token batch 1"), ("ms_b16", "ms/token batch 16")):
        ours = statistics.median(x[key] for x in int8)
        print(f"{label}: ours (CT2 int8) {ours:.4g} ms, baseline (HF fp32) {base[key]:.4g} ms, "
              f"ratio {base[key] / ours:.2f}x")
    w8 = weights_mib(dict((n, d) for n, d, _ in rows)["CT2 int8"])
    print(f"weights on disk: ours (CT2 int8) {w8:.4g} MiB, baseline (HF fp32) {base_w:.4g} MiB, "
          f"ratio {w8 / base_w:.2f}x")


if __name__ == "__main__":
    main()
