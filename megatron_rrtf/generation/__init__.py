"""The one way completions are drawn from a Hugging Face causal LM: HumanEval, infilling, RRTF
sampling and held-out evaluation all go through `Completer.generate` (the HF `Generator`, or
the vLLM backend for RRTF sampling).

- Prompts are text (encoded without special tokens) or token ids (infill prompts hold special
  tokens that text would not encode).
- Budget: a prompt keeps at most the model's positions minus `max_new_tokens` tokens; a longer
  one loses its start (counted and logged; `fit` returns the count). Callers that can cut more
  cleverly (infilling keeps the tokens around the hole) ask `prompt_budget` first.
- Stops: a row ends at EOS or any of `stop_token_ids`; the decoded text is then cut before the
  first of the `stop` strings (`cut_at_stop`, the function RRTF's code extraction uses too).
- Batching: rows (prompt x sample) are left-padded so new tokens start in one column, and cut
  into `batch_size` rows per `generate` call of the model.
- Backends (rrtf.sample.backend): `hf`, batched `generate` of transformers (`generator`), and
  `vllm`, vLLM's engine (`vllm_engine`, extra `gpu`). Both are a `Completer` (`completer`), which
  owns the prompt budget, the stop ids and the stop-string cut, so they differ only in how new
  token ids are drawn. `backends.load_completer` picks one from the config.
- Device and dtype: `auto` is CUDA in bf16 when present, else the CPU in fp32.
- Seeding (hf): `torch.manual_seed(seed)` once per call, so the same prompts, settings and
  batch size give the same completions (vllm: a seed per prompt, see vllm_engine). Greedy when
  temperature == 0, else temperature + nucleus sampling.

- CTranslate2: a directory holding model.bin beside config.json (e.g. `mrrtf export --format ct2
  --quantization int8`) runs through `CT2Generator`, which `Generator.load` picks by what the
  directory holds; it overrides only the model call on one batch (`complete_batch`) and seeding.

Modules: `completer` (Completer, Sampling; no torch), `generator` (Generator, resolve_device;
imports torch and transformers), `ct2_generator` (CT2Generator; imports ctranslate2, the optional
extra `ct2`), `vllm_engine` (VLLMGenerator; imports vllm only in `load`), `backends`
(load_completer) and `stops` (cut_at_stop, cut_at_stop_ids; pure). Import them directly: this
package imports nothing.
"""
