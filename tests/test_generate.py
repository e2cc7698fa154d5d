"""The one generation path (megatron_rrtf.generation) with tiny random HF models and a tokenizer
built here (no downloads): batching, seeding, stops, prompt budget, the RRTF sampler."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPTBigCodeConfig,
    GPTBigCodeForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from megatron_rrtf.errors import ConfigError
from megatron_rrtf.generation.generator import Generator, Sampling, resolve_device
from megatron_rrtf.generation.stops import cut_at_stop, cut_at_stop_ids

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for i in range(10):\n    print(i)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
]
PROMPTS = ["def add(a, b):\n", "for i in range(3):\n    print(", "class"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<pad>")


def tiny_model(kind: str, vocab_size: int):
    torch.manual_seed(0)
    if kind == "gpt_bigcode":
        config = GPTBigCodeConfig(vocab_size=vocab_size, n_positions=256, n_embd=32, n_layer=2,
                                  n_head=4, multi_query=True)
        return GPTBigCodeForCausalLM(config).eval()
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                         max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module", params=["gpt_bigcode", "llama"])
def generator(request, tokenizer):
    return Generator(tiny_model(request.param, len(tokenizer)), tokenizer)


def test_greedy_batched_with_left_padding_equals_one_prompt_at_a_time(generator):
    config = Sampling(max_new_tokens=8, batch_size=8)
    batched = generator.generate(PROMPTS, config)
    alone = [generator.generate([p], config)[0] for p in PROMPTS]
    assert batched == alone
    assert [len(c) for c in batched] == [1, 1, 1]


def test_text_and_token_id_prompts_give_the_same_completions(generator):
    config = Sampling(max_new_tokens=8, batch_size=2)
    ids = [generator.encode(p) for p in PROMPTS]
    assert generator.generate(ids, config) == generator.generate(PROMPTS, config)


def test_sampling_shapes_and_seeding(generator):
    config = Sampling(max_new_tokens=6, temperature=1.0, top_p=0.95, num_samples=3,
                      batch_size=4, seed=7)
    first = generator.generate(PROMPTS, config)
    again = generator.generate(PROMPTS, config)
    other = generator.generate(PROMPTS, Sampling(max_new_tokens=6, temperature=1.0,
                                                 num_samples=3, batch_size=4, seed=8))
    assert [len(c) for c in first] == [3, 3, 3]
    assert first == again
    assert first != other


def test_stop_strings_are_cut(generator):
    free = generator.generate(PROMPTS, Sampling(max_new_tokens=10, temperature=1.0,
                                                num_samples=2, seed=1))
    # stop at a character that appears in the unconstrained samples
    stop_char = next(ch for row in free for c in row for ch in c if ch.strip())
    stopped = generator.generate(PROMPTS, Sampling(max_new_tokens=10, temperature=1.0,
                                                   num_samples=2, seed=1, stop=(stop_char,)))
    assert all(stop_char not in c for row in stopped for c in row)
    for row_free, row_stopped in zip(free, stopped):
        for f, s in zip(row_free, row_stopped):
            assert f.startswith(s) and s == cut_at_stop(f, (stop_char,))


def test_stop_helpers():
    assert cut_at_stop_ids([5, 6, 2, 7], {2}) == [5, 6]
    assert cut_at_stop_ids([5, 6], {2}) == [5, 6]
    assert cut_at_stop("a\ndef b\n#c", ("\n#", "\ndef")) == "a"
    assert cut_at_stop("abc", ()) == "abc"
    assert cut_at_stop("abc", ("",)) == "abc"  # an empty marker cuts nothing


def test_stop_token_ids_end_rows(generator, tokenizer):
    free = generator.generate(PROMPTS, Sampling(max_new_tokens=8))
    first_id = tokenizer(free[0][0], add_special_tokens=False)["input_ids"][0]
    stopped = generator.generate(PROMPTS, Sampling(max_new_tokens=8, stop_token_ids=(first_id,)))
    assert stopped[0][0] == ""


def test_prompts_over_the_budget_lose_their_start_and_are_counted(generator, caplog):
    """The model holds 256 positions: with 200 new tokens a prompt keeps its last 56 tokens,
    and generating from it equals generating from those 56 tokens."""
    long_prompt = "x = 1\n" * 200
    ids, cut = generator.fit([long_prompt, PROMPTS[0]], max_new_tokens=200)
    assert cut == 1 and len(ids[0]) == 56 == generator.prompt_budget(200)
    assert ids[0] == generator.encode(long_prompt)[-56:] and ids[1] == generator.encode(PROMPTS[0])
    config = Sampling(max_new_tokens=200, batch_size=2)
    with caplog.at_level("WARNING"):
        assert generator.generate([long_prompt], config) == generator.generate([ids[0]], config)
    assert "1 of 1 prompts are longer" in caplog.text
    with pytest.raises(ConfigError, match="max_new_tokens=250 leaves 6"):
        generator.prompt_budget(250)


def test_long_prompts_do_not_trigger_the_tokenizers_length_warning(generator, caplog, capfd):
    """transformers warns 'Token indices sequence length is longer than the specified maximum'
    when a tokenizer encodes past model_max_length; the generation path encodes quietly and
    cuts to the budget itself."""
    tokenizer, limit = generator.tokenizer, generator.tokenizer.model_max_length
    tokenizer.model_max_length, tokenizer.deprecation_warnings = 16, {}  # it warns once only
    try:
        with caplog.at_level("WARNING"):
            generator.fit(["x = 1\n" * 50], max_new_tokens=8)
    finally:
        tokenizer.model_max_length = limit
    printed = capfd.readouterr()  # transformers may print through its own handler
    assert "Token indices sequence length" not in caplog.text + printed.out + printed.err


def test_sampler_passes_temperature_samples_and_seed(generator):
    base = Sampling(max_new_tokens=6, top_p=0.9, batch_size=4, stop=("\n",))
    sampler = generator.sampler(base)
    assert sampler(PROMPTS, 1.0, 2, 3) == generator.generate(
        PROMPTS, Sampling(max_new_tokens=6, temperature=1.0, top_p=0.9, num_samples=2,
                          batch_size=4, stop=("\n",), seed=3))
    assert sampler(PROMPTS, 0.0, 1, 3) == generator.generate(PROMPTS, base)


def test_model_directory_round_trip(tmp_path, tokenizer):
    model = tiny_model("gpt_bigcode", len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = Sampling(max_new_tokens=8)
    loaded = Generator.load(tmp_path, device="cpu")
    assert loaded.generate(PROMPTS, config) == Generator(model, tokenizer).generate(PROMPTS,
                                                                                  config)


def test_device_and_dtype_resolution():
    import torch

    assert resolve_device("cpu") == (torch.device("cpu"), torch.float32)
    assert resolve_device("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == (torch.device("cpu"), torch.float32)
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="dtype 'fp8'"):
        resolve_device("cpu", "fp8")


def test_invalid_sampling_is_refused():
    with pytest.raises(ConfigError):
        Sampling(top_p=0.0)
    with pytest.raises(ConfigError):
        Sampling(stop=("",))
