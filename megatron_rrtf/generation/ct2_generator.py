"""`CT2Generator`: the one generation path (`Generator`: prompt fitting, batching, stops,
decoding) with a CTranslate2 model running the tokens, e.g. an int8 `mrrtf export --format ct2`.

- The directory holds CTranslate2's model.bin/config.json/vocabulary.json and the HF tokenizer
  files, which encode prompts and decode completions exactly as on the HF model; token ids go to
  CTranslate2 as the vocabulary's strings (its API takes strings).
- Greedy is `sampling_topk=1`; sampling is temperature + nucleus over the whole vocabulary
  (`sampling_topk=0`), seeded with `ctranslate2.set_random_seed` once per `generate` call.
  CTranslate2 seeds each worker thread's RNG once, when the thread starts, so after a sampled
  call the model is loaded again before the next seeding (measured: without it, the same seed
  gave new samples). The same seed thus gives the same completions; they are not the HF path's
  samples (another RNG).
- Stops: CTranslate2 ends a row at any stop id (`end_token`); stop strings end a row early
  through its per-token callback, and the text is cut by the same `cut_at_stop` as on HF, so
  greedy completions equal the HF model's wherever the logits agree.
- Position limit: from our mrrtf_ct2.json (CTranslate2's config does not record it), else the
  tokenizer's model_max_length when set; the prompt budget follows as on HF.
- Device `auto` is CUDA when CTranslate2 sees a GPU, else the CPU; dtype `auto` computes in the
  type the model was converted to; CPU threads follow torch's setting (`--threads`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from megatron_rrtf.convert.ct2 import ct2_metadata, import_ctranslate2
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.generation.generator import Generator, Sampling

COMPUTE_TYPES = {"auto": "default", None: "default", "float32": "float32",
                 "bfloat16": "bfloat16", "float16": "float16"}
"""Generator.load's dtype -> CTranslate2 compute_type (int8 kinds: pass them as they are)."""
UNSET_MAX_LENGTH = 10 ** 17
"""transformers' model_max_length when a tokenizer sets none (any value this large)."""


def resolve_ct2_device(device: str) -> tuple[str, int]:
    """(device, index) for CTranslate2: auto is cuda when it sees a GPU, else cpu."""
    ct2 = import_ctranslate2()
    if device == "auto":
        return ("cuda", 0) if ct2.get_cuda_device_count() > 0 else ("cpu", 0)
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r}: CTranslate2 runs on cpu, cuda or cuda:N")
    if kind == "cuda" and ct2.get_cuda_device_count() == 0:
        raise ConfigError(f"device {device!r}: CTranslate2 sees no CUDA device on this machine")
    return kind, int(index or 0)


class CT2Generator(Generator):
    """A CTranslate2 generator and the HF tokenizer beside it."""

    def __init__(self, open_model: Callable[[], Any], tokenizer: Any,
                 max_positions: int | None = None, quantization: str | None = None):
        """open_model() -> a ctranslate2.Generator (called again to restart its RNG)."""
        self.use_tokenizer(tokenizer, max_positions)
        self.open_model = open_model
        self.model = open_model()
        self.sampled = False
        """A sampled call ran since the model was opened (its threads' RNG moved on)."""
        self.quantization = quantization

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", dtype: str | torch.dtype | None = "auto",
             threads: int | None = None) -> CT2Generator:
        """From a CTranslate2 model directory holding the HF tokenizer files."""
        from transformers import AutoTokenizer

        ct2 = import_ctranslate2()
        path = Path(path)
        if not (path / "tokenizer_config.json").is_file():
            raise ConfigError(f"{path} has no HF tokenizer files (tokenizer_config.json): convert "
                              "it with `mrrtf export --format ct2`, which copies them")
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).removeprefix("torch.")
        compute_type = COMPUTE_TYPES.get(dtype, dtype)
        kind, index = resolve_ct2_device(device)

        def open_model():
            return ct2.Generator(str(path), device=kind, device_index=index,
                                 compute_type=compute_type,
                                 intra_threads=threads or torch.get_num_threads())
        tokenizer = AutoTokenizer.from_pretrained(path)
        meta = ct2_metadata(path)
        limit = meta.get("max_positions")
        if limit is None and 0 < (tokenizer.model_max_length or 0) < UNSET_MAX_LENGTH:
            limit = int(tokenizer.model_max_length)
        return cls(open_model, tokenizer, limit, meta.get("quantization"))

    def seed(self, seed: int) -> None:
        import_ctranslate2().set_random_seed(seed)
        if self.sampled:  # new worker threads draw their RNG from the seed just set
            del self.model
            self.model, self.sampled = self.open_model(), False

    def complete_batch(self, prompts: list[list[int]], sampling: Sampling, stop_ids: set[int]
                       ) -> list[list[int]]:
        options = ({"sampling_topk": 0, "sampling_topp": sampling.top_p,
                    "sampling_temperature": sampling.temperature}
                   if sampling.temperature > 0 else {"sampling_topk": 1})
        self.sampled = self.sampled or sampling.temperature > 0
        if sampling.stop:
            options["callback"] = self._stop_string_callback(len(prompts), sampling.stop)
        results = self.model.generate_batch(
            [self.tokenizer.convert_ids_to_tokens(p) for p in prompts],
            max_length=sampling.max_new_tokens, include_prompt_in_result=False,
            end_token=sorted(stop_ids), **options)
        return [r.sequences_ids[0] for r in results]

    def _stop_string_callback(self, rows: int, stop: tuple[str, ...]):
        """CTranslate2's per-token callback: True (end this row) once its text holds a stop
        string. Only the tail that could hold a new stop is decoded at each step.

        It holds the tokenizer, never `self`: CTranslate2 may drop the callback on its worker
        thread, and if that dropped the last reference to this generator, the model would be
        destroyed on its own thread (std::system_error "Resource deadlock avoided", abort)."""
        tokenizer = self.tokenizer
        tokens: list[list[int]] = [[] for _ in range(rows)]
        longest = max(len(s) for s in stop)

        def on_token(step) -> bool:
            seen = tokens[step.batch_id]
            seen.append(step.token_id)
            # a stop string of n characters spans at most 4n tokens (byte-fallback pieces are
            # >= 1 byte each); missing a stop here costs time only, `generate` cuts the text
            tail = tokenizer.decode(seen[-(4 * longest + 1):], skip_special_tokens=True,
                                    clean_up_tokenization_spaces=False)
            return any(s in tail for s in stop)
        return on_token
