"""Batched generation with tiny random HF models and a tokenizer built here (no downloads)."""

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
from megatron_rrtf.eval.generate import (
    SamplingConfig,
    cut_at_stop_ids,
    generate,
    load_model,
    truncate_at_stop,
)

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
def model(request, tokenizer):
    return tiny_model(request.param, len(tokenizer))


def test_greedy_batched_with_left_padding_equals_one_prompt_at_a_time(model, tokenizer):
    config = SamplingConfig(max_new_tokens=8, batch_size=8)
    batched = generate(PROMPTS, model, tokenizer, config)
    alone = [generate([p], model, tokenizer, config)[0] for p in PROMPTS]
    assert batched == alone
    assert [len(c) for c in batched] == [1, 1, 1]


def test_sampling_shapes_and_seeding(model, tokenizer):
    config = SamplingConfig(max_new_tokens=6, temperature=1.0, top_p=0.95, num_samples=3,
                            batch_size=4, seed=7)
    first = generate(PROMPTS, model, tokenizer, config)
    again = generate(PROMPTS, model, tokenizer, config)
    other = generate(PROMPTS, model, tokenizer,
                     SamplingConfig(max_new_tokens=6, temperature=1.0, num_samples=3,
                                    batch_size=4, seed=8))
    assert [len(c) for c in first] == [3, 3, 3]
    assert first == again
    assert first != other


def test_stop_strings_are_cut(model, tokenizer):
    free = generate(PROMPTS, model, tokenizer,
                    SamplingConfig(max_new_tokens=10, temperature=1.0, num_samples=2, seed=1))
    # stop at a character that appears in the unconstrained samples
    stop_char = next(ch for row in free for c in row for ch in c if ch.strip())
    stopped = generate(PROMPTS, model, tokenizer,
                       SamplingConfig(max_new_tokens=10, temperature=1.0, num_samples=2, seed=1,
                                      stop=(stop_char,)))
    assert all(stop_char not in c for row in stopped for c in row)
    for row_free, row_stopped in zip(free, stopped):
        for f, s in zip(row_free, row_stopped):
            assert f.startswith(s) and s == truncate_at_stop(f, (stop_char,))


def test_stop_ids_and_truncation_helpers():
    assert cut_at_stop_ids([5, 6, 2, 7], {2}) == [5, 6]
    assert cut_at_stop_ids([5, 6], {2}) == [5, 6]
    assert truncate_at_stop("a\ndef b\n#c", ("\n#", "\ndef")) == "a"
    assert truncate_at_stop("abc", ()) == "abc"


def test_stop_token_ids_end_rows(model, tokenizer):
    free = generate(PROMPTS, model, tokenizer, SamplingConfig(max_new_tokens=8))
    first_id = tokenizer(free[0][0], add_special_tokens=False)["input_ids"][0]
    stopped = generate(PROMPTS, model, tokenizer,
                       SamplingConfig(max_new_tokens=8, stop_token_ids=(first_id,)))
    assert stopped[0][0] == ""


def test_model_directory_round_trip(tmp_path, tokenizer):
    model = tiny_model("gpt_bigcode", len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model(tmp_path)
    config = SamplingConfig(max_new_tokens=8)
    assert generate(PROMPTS, loaded, loaded_tok, config) == generate(PROMPTS, model, tokenizer,
                                                                     config)


def test_invalid_sampling_is_refused():
    with pytest.raises(ConfigError):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ConfigError):
        SamplingConfig(stop=("",))
