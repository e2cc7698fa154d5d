"""Claim: batched generation (`generation.generator.Generator`, left-padded rows: the one path
HumanEval, infilling and RRTF use) gives several times the tokens/s of one prompt at a time, on
an exported tiny model on CPU, with the same outputs.

Prompts: the first N HumanEval prompts, fitted to the model's context minus the new tokens (the
generator's own rule), greedy.
Both ways run in the same process, alternating, median of the rounds.

    python benchmarks/bench_generate.py --model RUN/eval/hf_step_X  [--prompts 32]
                                        [--threads 1]
    (an HF dir from `mrrtf export` / `mrrtf eval`; without --model a randomly initialised
    GPTBigCode of configs/tiny.yaml's shape is used)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from megatron_rrtf.eval.humaneval import load_problems  # noqa: E402
from megatron_rrtf.generation.generator import Generator, Sampling  # noqa: E402


def random_tiny_model():
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    torch.manual_seed(0)
    config = GPTBigCodeConfig(vocab_size=8000, n_positions=256, n_embd=128, n_layer=2, n_head=4,
                              multi_query=True, eos_token_id=0, bos_token_id=0)
    return GPTBigCodeForCausalLM(config).eval()


class ByteIds:
    """A stand-in tokenizer for the random model: one id per character, id 0 ends a row."""

    eos_token_id = pad_token_id = 0

    def encode(self, text: str, **_) -> list[int]:
        return [(ord(c) % 7900) + 100 for c in text]

    def decode(self, ids, **_) -> str:
        return "".join(chr(i) for i in ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="HF model dir (exported tiny model)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        generator = Generator.load(args.model, device="cpu")
    else:
        generator = Generator(random_tiny_model(), ByteIds())
    problems = list(load_problems().values())[: args.prompts]
    prompts, _ = generator.fit([p["prompt"] for p in problems], args.new_tokens)
    batched = Sampling(max_new_tokens=args.new_tokens, batch_size=args.batch_size)
    single = Sampling(max_new_tokens=args.new_tokens, batch_size=1)
    times: dict[str, list[float]] = {"batched": [], "single": []}
    outputs = {}
    for _ in range(args.rounds):
        for name, config in (("batched", batched), ("single", single)):
            t0 = time.perf_counter()
            outputs[name] = generator.generate(prompts, config)
            times[name].append(time.perf_counter() - t0)
    # each row ends at its stop token (counted) or at the limit
    tokens = sum(min(len(generator.encode(s[0])) + 1, args.new_tokens)
                 for s in outputs["batched"])
    ours = tokens / statistics.median(times["batched"])
    baseline = tokens / statistics.median(times["single"])
    same = outputs["batched"] == outputs["single"]
    print(f"generation: {len(prompts)} HumanEval prompts x <= {args.new_tokens} new tokens, greedy, "
          f"{'model ' + args.model if args.model else 'random tiny GPTBigCode'}, CPU, "
          f"{torch.get_num_threads()} threads; same outputs: {same}")
    print(f"ours {ours:.0f} tokens/s (batch {args.batch_size}), baseline {baseline:.0f} tokens/s "
          f"(batch 1), ratio {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
