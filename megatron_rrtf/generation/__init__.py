"""The one way completions are drawn from a Hugging Face causal LM: HumanEval, infilling, RRTF
sampling and held-out evaluation all go through `Generator.generate`.

- Prompts are text (encoded without special tokens) or token ids (infill prompts hold special
  tokens that text would not encode).
- Budget: a prompt keeps at most the model's positions minus `max_new_tokens` tokens; a longer
  one loses its start (counted and logged; `fit` returns the count). Callers that can cut more
  cleverly (infilling keeps the tokens around the hole) ask `prompt_budget` first.
- Stops: a row ends at EOS or any of `stop_token_ids`; the decoded text is then cut before the
  first of the `stop` strings (`cut_at_stop`, the function RRTF's code extraction uses too).
- Batching: rows (prompt x sample) are left-padded so new tokens start in one column, and cut
  into `batch_size` rows per `generate` call of the model.
- Device and dtype: `auto` is CUDA in bf16 when present, else the CPU in fp32.
- Seeding: `torch.manual_seed(seed)` once per call, so the same prompts, settings and batch size
  give the same completions. Greedy when temperature == 0, else temperature + nucleus sampling.

- Backends: a Hugging Face model (transformers) by default; a CTranslate2 directory (model.bin
  beside config.json, e.g. `mrrtf export --format ct2 --quantization int8`) runs through
  `CT2Generator`, which `Generator.load` picks by what the directory holds. Only the model call
  differs (`complete_batch`); prompts, budget, batching, stops and decoding are shared.

Modules: `generator` (Generator, Sampling, resolve_device; imports torch and transformers),
`ct2_generator` (CT2Generator; imports ctranslate2, the optional extra `ct2`) and `stops`
(cut_at_stop, cut_at_stop_ids; pure). Import them directly: this package imports nothing.
"""
