"""The vLLM backend (generation.vllm_engine) driven through vLLM's interface by stand-ins: the
engine is an object with `LLM.generate(prompts, sampling_params, use_tqdm)` returning
`RequestOutput`-shaped objects, and the parameters a dataclass with `SamplingParams`' field names.
It must fit prompts, build parameters, and map outputs and stops exactly as the HF backend."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch

from megatron_rrtf.config.rrtf import SampleEngineConfig
from megatron_rrtf.errors import ConfigError
from megatron_rrtf.generation.backends import check_engine, load_completer
from megatron_rrtf.generation.completer import Sampling
from megatron_rrtf.generation.generator import Generator
from megatron_rrtf.generation.vllm_engine import VLLMGenerator, prompt_seed
from tests.rrtf_helpers import save_tiny_hf_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["def f(x):\n", "    return", "def f(x):\n    return x + 1\n" * 30]
"""The last one is over the 512-position budget at 300 new tokens: both backends cut it."""


@dataclass
class StandInSamplingParams:
    """The vllm.SamplingParams fields the adapter may set (a misspelt one is a TypeError)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    seed: int | None = None


class HFBackedEngine:
    """vLLM's LLM.generate shape, each prompt decoded alone (no padding) by an HF model: greedy,
    ending at the request's stop ids, which vLLM keeps in token_ids (the EOS included)."""

    def __init__(self, model, pad_id: int):
        self.model, self.pad_id, self.calls = model, pad_id, []

    @torch.no_grad()
    def generate(self, prompts, sampling_params, use_tqdm=False):
        self.calls.append((prompts, sampling_params))
        outputs = []
        for prompt, params in zip(prompts, sampling_params):
            ids = torch.tensor([prompt["prompt_token_ids"]])
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=params.max_tokens,
                                      eos_token_id=params.stop_token_ids, pad_token_id=self.pad_id)
            new = out[0, ids.shape[1]:].tolist()
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=new, text="?")
                                                    for _ in range(params.n)]))
        return outputs


class ScriptedEngine:
    """Returns the given token ids for every prompt and sample."""

    def __init__(self, rows):
        self.rows = rows

    def generate(self, prompts, sampling_params, use_tqdm=False):
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=r, text="?") for r in
                                         self.rows[:p.n]]) for p in sampling_params]


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    return Generator.load(save_tiny_hf_model(tmp_path_factory.mktemp("m")), "cpu")


def _vllm_over(hf, engine):
    return VLLMGenerator(engine, hf.tokenizer, hf.max_positions, StandInSamplingParams)


def test_greedy_completions_equal_the_hf_backend(hf):
    engine = HFBackedEngine(hf.model, hf.pad_id)
    vllm = _vllm_over(hf, engine)
    eos = hf.tokenizer.eos_token_id
    stop_id = hf.encode(" ")[0]
    for sampling in (Sampling(max_new_tokens=300, num_samples=2, batch_size=2),
                     Sampling(max_new_tokens=12, stop=("x",), stop_token_ids=(stop_id,))):
        ours = vllm.generate(PROMPTS, sampling)
        assert ours == hf.generate(PROMPTS, sampling)
        assert all(len(rows) == sampling.num_samples for rows in ours)
        prompts, params = engine.calls[-1]
        fitted, cut = hf.fit(PROMPTS, sampling.max_new_tokens)
        assert [p["prompt_token_ids"] for p in prompts] == fitted
        assert cut == (1 if sampling.max_new_tokens == 300 else 0)
        assert all(p.n == 1 and p.temperature == 0 and p.top_p == 1.0 for p in params)
        assert params[0].stop_token_ids == sorted({eos, *sampling.stop_token_ids})
    assert any(len(t) > 0 for rows in ours for t in rows)   # the check compared real text


def test_sampled_requests_carry_n_temperature_top_p_stops_and_a_seed_per_prompt(hf):
    engine = HFBackedEngine(hf.model, hf.pad_id)
    sampling = Sampling(max_new_tokens=8, temperature=0.7, top_p=0.9, num_samples=3,
                        stop=("\n#", "\ndef"), stop_token_ids=(5,), seed=11)
    _vllm_over(hf, engine).generate(PROMPTS[:2], sampling)
    _, params = engine.calls[-1]
    assert params == [StandInSamplingParams(
        n=3, temperature=0.7, top_p=0.9, max_tokens=8, stop=["\n#", "\ndef"],
        stop_token_ids=sorted({hf.tokenizer.eos_token_id, 5}), seed=prompt_seed(11, i))
        for i in range(2)]
    assert len({p.seed for p in params}) == 2


def test_outputs_are_cut_at_stop_ids_and_stop_strings_from_token_ids(hf):
    eos = hf.tokenizer.eos_token_id
    body = hf.encode("x + 1\n### Instruction\nmore")
    rows = [body, hf.encode("x") + [eos] + hf.encode("x + 1"), hf.encode("x + 1")]
    sampling = Sampling(max_new_tokens=8, temperature=1.0, num_samples=3,
                        stop=("\n### Instruction",))
    out = _vllm_over(hf, ScriptedEngine(rows)).generate(["def f(x):\n"], sampling)
    assert out == [["x + 1", "x", "x + 1"]]
    assert out[0] == [hf.completion(r, sampling) for r in rows]   # the HF backend's rule


def test_missing_vllm_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)   # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'megatron-rrtf\[gpu\]'"):
        load_completer(tmp_path, SampleEngineConfig(backend="vllm"))
    if importlib.util.find_spec("vllm") is None:     # the start-up check, before any work
        with pytest.raises(ConfigError, match=r"pip install 'megatron-rrtf\[gpu\]'"):
            check_engine(SampleEngineConfig(backend="vllm"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_asking_for_cuda_without_it_fails_at_start_up():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        check_engine(SampleEngineConfig(device="cuda"))
    check_engine(SampleEngineConfig(device="auto", dtype="bfloat16"))   # CPU in bf16: allowed


def test_hf_backend_takes_device_and_dtype_from_config(tmp_path):
    path = save_tiny_hf_model(tmp_path / "m")
    auto = load_completer(path, SampleEngineConfig())
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(auto.model.parameters()).device.type == expected
    assert next(auto.model.parameters()).dtype == (torch.bfloat16 if expected == "cuda"
                                                   else torch.float32)
    half = load_completer(path, SampleEngineConfig(device="cpu", dtype="bfloat16"))
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert len(half.generate(["def f(x):\n"], Sampling(max_new_tokens=3))[0]) == 1
