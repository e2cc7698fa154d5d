"""Quantized hand-off: our exports go through CTranslate2's own converter for both families, the
CTranslate2 model answers as transformers does (float32 exactly, int8 within a stated
tolerance), `mrrtf eval` serves a CTranslate2 directory through the one generation path, and
GPTQ refuses on a CPU naming the extra and the device."""

from __future__ import annotations

import json
from pathlib import Path

import convert_workers as workers
import numpy as np
import pytest
import torch

from megatron_rrtf.convert.ct2 import CT2_MARKER, convert_to_ct2
from megatron_rrtf.generation.ct2_generator import CT2Generator
from megatron_rrtf.generation.generator import Generator, Sampling
from megatron_rrtf.tokenizer.special_tokens import EOD
from mrrtf.cli import main as mrrtf

ctranslate2 = pytest.importorskip("ctranslate2")

pytestmark = [pytest.mark.xdist_group("convert"), pytest.mark.usefixtures("one_torch_thread")]

FAMILIES = {  # name -> config overrides: StarCoder MQA (GPTBigCode), Llama GQA with tied head
    "starcoder-mqa": ["model.family=starcoder", "model.num_query_groups=1"],
    "rope-gqa-tied": ["model.family=rope", "model.num_query_groups=2",
                      "model.tie_embeddings=true"],
}
EPSILON_KEY = {"starcoder-mqa": "layer_norm_epsilon", "rope-gqa-tied": "rms_norm_eps"}
PROMPTS = ["def add(a, b):\n    return", "import os\n", "class Stack:\n    def", "x = [1, 2",
           "for i in range(10):\n"]
INT8_MAX_LOGIT_ERROR = 0.25
"""int8 logits may differ from fp32 by at most this fraction of the fp32 logits' std
(measured here: 0.09 StarCoder, 0.13 Llama)."""
INT8_MIN_ARGMAX_AGREEMENT = 0.9
"""... and pick the fp32 next token at >= this fraction of positions (measured 0.95, 0.97)."""


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tokenizer_path):
    """Per family: a tiny checkpoint, its HF export, and its CTranslate2 float32 (`mrrtf
    export --format ct2`) and int8 conversions."""
    from megatron_rrtf.convert.export import export_checkpoint

    root = tmp_path_factory.mktemp("ct2")
    out = {}
    for name, overrides in FAMILIES.items():
        run_dir = root / name / "run"
        workers.save_tiny_checkpoint(run_dir, tiny_tokenizer_path, overrides,
                                     torch.zeros(1, 4, dtype=torch.long))
        hf = export_checkpoint(run_dir, root / name / "hf")
        assert mrrtf(["export", str(run_dir), str(root / name / "ct2"), "--format", "ct2"]) == 0
        int8 = convert_to_ct2(hf, root / name / "ct2_int8", "int8")
        out[name] = dict(run=run_dir, hf=hf, ct2=root / name / "ct2", int8=int8)
    return out


def _tokens() -> torch.Tensor:
    return torch.randint(0, 1200, (2, workers.SEQ), generator=torch.Generator().manual_seed(0))


def _hf_logits(hf_dir: Path) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir)).eval()
    with torch.no_grad():
        return model(_tokens()).logits.numpy()


def _ct2_logits(ct2_dir: Path) -> np.ndarray:
    generator = ctranslate2.Generator(str(ct2_dir), device="cpu", intra_threads=1)
    return np.array(generator.forward_batch(_tokens().tolist()))


@pytest.mark.parametrize("family", FAMILIES)
def test_export_carries_every_field_converters_read_and_ct2_float32_logits_equal_hf(models,
                                                                                   family):
    m = models[family]
    tok = json.loads((m["hf"] / "tokenizer_config.json").read_text())
    assert {tok[k] for k in ("bos_token", "eos_token", "unk_token")} == {EOD}
    assert isinstance(tok["pad_token"], str)
    hf_config = json.loads((m["hf"] / "config.json").read_text())
    assert hf_config[EPSILON_KEY[family]] == pytest.approx(1e-5)
    assert hf_config["bos_token_id"] == hf_config["eos_token_id"]
    ct2_config = json.loads((m["ct2"] / "config.json").read_text())
    assert ct2_config["bos_token"] == ct2_config["eos_token"] == ct2_config["unk_token"] == EOD
    assert ct2_config["layer_norm_epsilon"] == pytest.approx(1e-5)
    assert json.loads((m["ct2"] / CT2_MARKER).read_text())["max_positions"] == workers.SEQ
    np.testing.assert_allclose(_ct2_logits(m["ct2"]), _hf_logits(m["hf"]), atol=1e-4, rtol=0)


def test_an_older_export_with_null_bos_and_unk_converts_and_loads(models, tmp_path):
    """Exports made before bos/unk were declared (both null) still convert: the CTranslate2
    config gets the eos token for them."""
    import shutil

    old = tmp_path / "old_hf"
    shutil.copytree(models["starcoder-mqa"]["hf"], old)
    config = json.loads((old / "tokenizer_config.json").read_text())
    config.update(bos_token=None)
    config.pop("unk_token")
    (old / "tokenizer_config.json").write_text(json.dumps(config))
    out = convert_to_ct2(old, tmp_path / "ct2")
    assert json.loads((out / "config.json").read_text())["bos_token"] == EOD
    ctranslate2.Generator(str(out), device="cpu")  # raised "type must be string" before


@pytest.mark.parametrize("family", FAMILIES)
def test_ct2_float32_greedy_completions_equal_transformers(models, family):
    hf = Generator.load(models[family]["hf"], device="cpu")
    ct2 = Generator.load(models[family]["ct2"], device="cpu")
    assert isinstance(ct2, CT2Generator) and ct2.max_positions == hf.max_positions
    plain = Sampling(max_new_tokens=12, batch_size=2)
    unstopped = hf.generate(PROMPTS, plain)
    assert ct2.generate(PROMPTS, plain) == unstopped
    # stop strings taken from inside two completions, so they do end rows early
    stop = tuple(text[4:6] for [text] in unstopped[:2])
    stopped = Sampling(max_new_tokens=12, batch_size=2, stop=stop)
    ours = ct2.generate(PROMPTS, stopped)
    assert ours == hf.generate(PROMPTS, stopped)
    assert ours != unstopped


@pytest.mark.parametrize("family", FAMILIES)
def test_ct2_int8_logits_stay_within_tolerance_of_fp32(models, family):
    m = models[family]
    ref, int8 = _hf_logits(m["hf"]), _ct2_logits(m["int8"])
    assert np.abs(int8 - ref).max() <= INT8_MAX_LOGIT_ERROR * ref.std()
    assert (int8.argmax(-1) == ref.argmax(-1)).mean() >= INT8_MIN_ARGMAX_AGREEMENT
    # and the weights really are 8-bit: well under half the float32 file
    assert (m["int8"] / "model.bin").stat().st_size < 0.5 * (m["ct2"] / "model.bin").stat().st_size


def test_ct2_sampling_repeats_for_a_seed_and_differs_across_seeds(models):
    ct2 = Generator.load(models["starcoder-mqa"]["ct2"], device="cpu")

    def draw(seed):
        return ct2.generate(PROMPTS[:2], Sampling(max_new_tokens=8, temperature=1.0,
                                                  num_samples=3, seed=seed))
    first = draw(1)
    assert draw(1) == first
    assert draw(2) != first


@pytest.mark.slow
def test_mrrtf_eval_on_a_ct2_dir_gives_the_hf_completions(models, tmp_path):
    """HumanEval and infilling run through the same prompts, stops and sandbox."""
    m = models["starcoder-mqa"]
    flags = ["--limit", "2", "--samples", "0",
             "--infill-tasks", "1", "--infill-formats", "fim_psm", "--max-new-tokens", "8",
             "--workers", "1", "--threads", "1"]
    results = {}
    tasks = {"hf": "humaneval,infill", "ct2": "perplexity,humaneval,infill"}
    for name in ("hf", "ct2"):
        out = tmp_path / f"{name}.json"
        assert mrrtf(["eval", str(m[name]), "--out", str(out), "--tasks", tasks[name],
                      *flags]) == 0
        results[name] = json.loads(out.read_text())
    hf, ct2 = results["hf"], results["ct2"]
    assert (hf["backend"], ct2["backend"]) == ("transformers", "ctranslate2")
    assert ct2["ct2_quantization"] == "none"
    assert "CTranslate2" in ct2["tasks"]["perplexity"]["skipped"]
    completions = ct2["tasks"]["humaneval"]["greedy"]["completions"]
    assert all(completions.values())
    assert completions == hf["tasks"]["humaneval"]["greedy"]["completions"]
    assert ct2["tasks"]["infill"] == hf["tasks"]["infill"]
    assert ct2["summary"] == hf["summary"]


def test_rrtf_heldout_eval_serves_a_ct2_dir_through_the_same_sampler(models):
    """`mrrtf rrtf eval`'s path (export cache -> align.sample.model_sampler): RRTF prompts and stop
    markers, the same completions from the CTranslate2 dir as from the HF dir."""
    from align.sample import model_sampler
    from megatron_rrtf.config.rrtf import RRTFConfig, SamplingConfig
    from megatron_rrtf.convert.export_cache import hf_model_dir
    from megatron_rrtf.rrtf.demo_problems import generate_demo_problems
    from megatron_rrtf.rrtf.problems import prompts_for

    _, held = generate_demo_problems(0, 3, seed=0)
    cfg = RRTFConfig(student=SamplingConfig(max_new_tokens=10), generation_batch_size=2)
    prompts = prompts_for([d.problem for d in held], cfg)
    m = models["rope-gqa-tied"]
    assert hf_model_dir(m["ct2"]) == m["ct2"]
    ours = model_sampler(hf_model_dir(m["ct2"]), cfg.student, cfg)(prompts, 0.0, 1, 0)
    assert all(texts[0] for texts in ours)
    assert ours == model_sampler(m["hf"], cfg.student, cfg)(prompts, 0.0, 1, 0)


def test_export_refusals_name_the_fix_gptq_on_cpu_names_the_extra_and_device(models, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("the refusal is for machines without CUDA")
    out = tmp_path / "gptq"
    assert mrrtf(["export", str(models["starcoder-mqa"]["hf"]), str(out), "--format", "gptq",
                  "--bits", "4"]) == 2
    err = capsys.readouterr().err
    assert "CUDA GPU" in err and "device: cpu" in err
    try:
        import gptqmodel  # noqa: F401
    except ImportError:
        assert "pip install 'megatron-rrtf[gptq]'" in err
    assert not out.exists()
    assert mrrtf(["export", str(models["starcoder-mqa"]["hf"]), str(out), "--format", "hf",
                  "--quantization", "int8"]) == 2
    assert "--quantization applies to --format ct2" in capsys.readouterr().err
    assert mrrtf(["export", str(models["starcoder-mqa"]["ct2"]), str(out), "--format", "ct2",
                  "--quantization", "int8"]) == 2
    assert "already is a CTranslate2 model directory" in capsys.readouterr().err
