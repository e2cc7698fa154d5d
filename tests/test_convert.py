"""Megatron checkpoints <-> Hugging Face: exact logits, exact tokenizer, bitwise round trips,
and refusals that name the blocking option."""

from __future__ import annotations

import json
import re
import sysconfig
from pathlib import Path

import convert_workers as workers
import pytest
import sentencepiece as spm
import torch
from distributed import run_distributed
from safetensors.torch import load_file

from megatron_rrtf.config import ModelConfig
from megatron_rrtf.convert import families, gpt_bigcode, llama
from megatron_rrtf.convert.export import export_checkpoint
from megatron_rrtf.convert.hf_tokenizer import sentencepiece_to_tokenizers
from megatron_rrtf.convert.import_hf import import_checkpoint
from megatron_rrtf.convert.qkv import merge_qkv, split_qkv
from megatron_rrtf.errors import ConfigError, ExportError
from megatron_rrtf.model.build import build_gpt_model
from megatron_rrtf.parallel.init import process_groups
from megatron_rrtf.tokenizer import special_tokens
from mrrtf.cli import main as mrrtf

pytestmark = pytest.mark.xdist_group("convert")

LOGIT_TOL = 1e-4
CASES = {  # name -> config overrides; covers MQA, MHA, GQA, tied/untied, explicit vocab_size
    "starcoder-mqa": ["model.family=starcoder", "model.num_query_groups=1"],
    "starcoder-mha-tied": ["model.family=starcoder", "model.num_query_groups=4",
                           "model.tie_embeddings=true"],
    "rope-mqa-tied": ["model.family=rope", "model.num_query_groups=1",
                      "model.tie_embeddings=true"],
    "rope-gqa": ["model.family=rope", "model.num_query_groups=2", "model.vocab_size=1300",
                 "model.rotary_base=500000"],
}


def _tokens(vocab: int = 1200) -> torch.Tensor:
    return torch.randint(0, vocab, (2, workers.SEQ), generator=torch.Generator().manual_seed(0))


def _hf_logits(out_dir: Path, tokens: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out_dir)).eval()
    with torch.no_grad():
        return model(tokens).logits


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_tokenizer_path):
    """Every case saved with TP=1 (RUN/checkpoints/latest layout) and exported once."""
    root = tmp_path_factory.mktemp("convert")
    out = {}
    for name, overrides in CASES.items():
        run_dir = root / name / "run"
        logits = workers.save_tiny_checkpoint(run_dir, tiny_tokenizer_path, overrides, _tokens())
        hf_dir = export_checkpoint(run_dir, root / name / "hf")      # run dir -> latest step
        out[name] = dict(run_dir=run_dir, hf_dir=hf_dir, logits=logits)
    return out


# -- mapping ------------------------------------------------------------------------------

@pytest.mark.parametrize("heads, groups", [(4, 1), (4, 2), (4, 4), (6, 3)])
def test_qkv_split_undoes_per_group_interleave(heads, groups):
    hd, h = 3, 5
    q, k, v = (torch.randn(n * hd, h) for n in (heads, groups, groups))
    fused = merge_qkv(q, k, v, heads, groups, hd)
    rows = fused.reshape(groups, heads // groups + 2, hd, h)
    assert torch.equal(rows[0, 0], q[:hd]) and torch.equal(rows[0, heads // groups], k[:hd])
    assert all(torch.equal(a, b) for a, b in zip(split_qkv(fused, heads, groups, hd), (q, k, v)))
    bias = torch.randn(fused.shape[0])
    assert torch.equal(merge_qkv(*split_qkv(bias, heads, groups, hd), heads, groups, hd), bias)


@pytest.mark.parametrize("family, groups, tie", [("starcoder", 1, False), ("starcoder", 4, True),
                                                 ("rope", 2, False), ("rope", 1, True)])
def test_every_hf_and_megatron_key_is_mapped_or_explicitly_ignored(family, groups, tie):
    from transformers import AutoModelForCausalLM

    config = workers.tiny_config("unused", [f"model.family={family}",
                                            f"model.num_query_groups={groups}",
                                            f"model.tie_embeddings={str(tie).lower()}"])
    with process_groups(config.parallel, 0):
        vocab, padded = 300, config.model.padded_vocab_size(300)
        ours = build_gpt_model(config, padded).state_dict()
        conv = families.for_family(family)
        hf_model = AutoModelForCausalLM.from_config(conv.hf_config(config.model, vocab, None, 0, 0))
        theirs = hf_model.state_dict()

        def kept(keys, ignored):
            return {k for k in keys if not any(re.fullmatch(p, k) for p in ignored)}

        to_hf = conv.to_hf(ours, config.model, vocab)
        assert set(to_hf) == kept(theirs, conv.ignored_hf(config.model))
        assert all(to_hf[k].shape == theirs[k].shape for k in to_hf)
        from_hf = conv.from_hf(theirs, config.model, padded)
        assert set(from_hf) == kept(ours, conv.IGNORED_MEGATRON)
        assert all(from_hf[k].shape == ours[k].shape for k in from_hf)
        # what is ignored is only metadata / tied / buffers, never a weight of its own
        assert {k for k in ours if k not in from_hf} <= {k for k in ours if k.endswith("_extra_state")}
        assert {k for k in theirs if k not in to_hf} <= ({"lm_head.weight"} if tie else set())


# -- export -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_exported_hf_logits_equal_megatron_logits(exported, case):
    from transformers import AutoTokenizer

    e = exported[case]
    config = json.loads((e["hf_dir"] / "config.json").read_text())
    expected_arch = "LlamaForCausalLM" if case.startswith("rope") else "GPTBigCodeForCausalLM"
    assert config["architectures"] == [expected_arch]
    vocab = 1300 if case == "rope-gqa" else 1200        # the real vocab, padding rows dropped
    assert config["vocab_size"] == vocab
    theirs = _hf_logits(e["hf_dir"], _tokens())
    diff = (theirs - e["logits"][..., :vocab]).abs().max().item()
    print(f"{case}: max |HF - megatron| logit difference {diff:.3g}")
    assert diff < LOGIT_TOL
    tok = AutoTokenizer.from_pretrained(str(e["hf_dir"]))
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<pad>"
    generation = json.loads((e["hf_dir"] / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tok.eos_token_id
    assert generation["pad_token_id"] == tok.pad_token_id


def test_export_from_tensor_and_pipeline_parallel_2_checkpoints(tmp_path, tiny_tokenizer_path):
    tok = str(tiny_tokenizer_path)
    tp_cases = [(name, str(tmp_path / name), tok, CASES[name])
                for name in ("starcoder-mqa", "rope-gqa")]
    pp_case = (str(tmp_path / "pp2"), tok, CASES["rope-gqa"])
    saved = run_distributed(workers.save_parallel_checkpoints, 2, tp_cases, pp_case, _tokens())
    for name, run_dir, _, _ in tp_cases:
        out = export_checkpoint(Path(run_dir) / "checkpoints" / workers.STEP, tmp_path / f"{name}-hf")
        vocab = json.loads((out / "config.json").read_text())["vocab_size"]
        tp2_logits = saved[0][name][..., :vocab]
        diff = (_hf_logits(out, _tokens()) - tp2_logits).abs().max().item()
        print(f"{name} from TP=2: max |HF - megatron TP=2| logit difference {diff:.3g}")
        assert diff < LOGIT_TOL
    # PP=2: the exported weights are exactly the ones both stages saved.
    out = export_checkpoint(tmp_path / "pp2/checkpoints" / workers.STEP, tmp_path / "pp2-hf")
    config = workers.tiny_config(tok, CASES["rope-gqa"] + ["model.num_layers=4"])
    back = llama.from_hf(load_file(out / "model.safetensors"), config.model, 1408)
    stages = {**saved[0]["pp2_weights"], **saved[1]["pp2_weights"]}
    assert set(back) == set(stages)
    for name, weight in stages.items():
        rows = 1300 if name in llama.EMBEDDING_KEYS else weight.shape[0]
        assert torch.equal(back[name][:rows], weight[:rows]), name


@pytest.mark.parametrize("case", ["starcoder-mqa", "rope-gqa"])
def test_sharded_export_loads_in_transformers_with_logits_equal_to_megatron(exported, tmp_path,
                                                                            case):
    e = exported[case]
    whole = load_file(e["hf_dir"] / "model.safetensors")
    sizes = {k: v.numel() * v.element_size() for k, v in whole.items()}
    limit = max(max(sizes.values()), sum(sizes.values()) // 4)  # forces >= 4 shards
    out = export_checkpoint(e["run_dir"], tmp_path / "hf", max_shard_size=str(limit))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    n = len(files)
    assert n >= 3 and files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert not (out / "model.safetensors").exists()
    assert index["metadata"]["total_size"] == sum(sizes.values())
    seen = {}
    for name in files:
        shard = load_file(out / name)
        assert sum(sizes[k] for k in shard) <= limit
        assert all(index["weight_map"][k] == name and k not in seen for k in shard)
        seen.update(shard)
    assert set(seen) == set(whole)          # every weight exactly once, bitwise the same
    assert all(torch.equal(seen[k], whole[k]) for k in whole)
    vocab = json.loads((out / "config.json").read_text())["vocab_size"]
    diff = (_hf_logits(out, _tokens()) - e["logits"][..., :vocab]).abs().max().item()
    assert diff < LOGIT_TOL


def test_shard_plan_cuts_greedily_and_gives_an_oversized_tensor_its_own_shard():
    from megatron_rrtf.convert.shards import SINGLE_FILE, parse_size, plan_shards

    assert [parse_size(t) for t in ("5GB", "500MB", "2GiB", "1000", 7)] == [
        5 * 10**9, 5 * 10**8, 2 * 2**30, 1000, 7]
    with pytest.raises(ConfigError, match="--max-shard-size"):
        parse_size("5 parsecs")
    tensors = [("a", (10,)), ("b", (10,)), ("c", (40,)), ("d", (5,)), ("e", (5,))]   # fp32
    plan = plan_shards(tensors, torch.float32, 80)
    assert plan.keys == (("a", "b"), ("c",), ("d", "e")) and plan.sizes == (80, 160, 40)
    assert plan.files[1] == "model-00002-of-00003.safetensors"
    assert plan_shards(tensors, torch.float32, 10**6).files == (SINGLE_FILE,)


def test_starcoder_15b_shard_plan_is_made_on_the_meta_device():
    import math
    import resource

    from megatron_rrtf.config import load_config
    from megatron_rrtf.convert.export import shard_plan
    from megatron_rrtf.convert.shards import SINGLE_FILE

    model = load_config("configs/starcoder_15b.yaml").model
    hf_config = gpt_bigcode.hf_config(model, model.vocab_size, None, 0, 0)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss          # KiB
    plan = shard_plan(model, hf_config, torch.bfloat16)                         # default 5GB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 2 * 2**20
    limit = 5 * 10**9
    # every weight the converter maps, exactly once (the plan reads the HF class instead)
    expected = {gpt_bigcode._hf_name(n) for n in gpt_bigcode._megatron_names(model)}
    planned = [k for keys in plan.keys for k in keys]
    assert len(planned) == len(set(planned)) and set(planned) == expected
    params = sum(math.prod(plan.shapes[k]) for k in planned)
    assert 15.0e9 < params < 16.5e9 and plan.total_size == 2 * params
    sizes = [sum(2 * math.prod(plan.shapes[k]) for k in keys) for keys in plan.keys]
    assert list(plan.sizes) == sizes and max(sizes) <= limit
    largest = max(2 * math.prod(s) for s in plan.shapes.values())
    n = len(plan.files)
    assert math.ceil(plan.total_size / limit) <= n <= math.ceil(plan.total_size / (limit - largest))
    for i in range(n - 1):  # greedy: the next shard's first tensor did not fit
        assert sizes[i] + 2 * math.prod(plan.shapes[plan.keys[i + 1][0]]) > limit
    assert plan.files == tuple(f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1))
    assert SINGLE_FILE not in plan.files
    index = plan.index()
    assert index["metadata"]["total_size"] == plan.total_size
    assert index["weight_map"] == {k: f for f, keys in zip(plan.files, plan.keys) for k in keys}
    print(f"StarCoder 15B in bf16: {params / 1e9:.2f}B parameters, {n} shards of <= 5GB")


def test_generate_runs_on_exported_model_and_follows_megatron_argmax(exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    e = exported["starcoder-mqa"]
    model = AutoModelForCausalLM.from_pretrained(str(e["hf_dir"])).eval()
    tok = AutoTokenizer.from_pretrained(str(e["hf_dir"]))
    prompt = tok("def add(a, b):\n    return", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 6
    assert isinstance(tok.decode(out[0]), str)
    # the same greedy continuation from our megatron model, one forward per token
    config = workers.tiny_config("unused", CASES["starcoder-mqa"])
    with process_groups(config.parallel, 0):
        ours = build_gpt_model(config, config.model.padded_vocab_size(1200)).eval()
        from megatron_rrtf.checkpoint.model_io import load_model

        load_model(ours, e["run_dir"] / "checkpoints" / workers.STEP)
        ids = prompt["input_ids"]
        with torch.no_grad():
            for _ in range(6):
                pos = torch.arange(ids.shape[1])[None]
                nxt = ours(ids, pos, None)[0, -1, :1200].argmax()
                ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
        assert torch.equal(ids, out)


def test_cli_export_refuses_gqa_for_gpt_bigcode_before_loading_weights(tmp_path,
                                                                        tiny_tokenizer_path,
                                                                        capsys):
    config = workers.tiny_config(tiny_tokenizer_path, ["model.family=starcoder",
                                                       "model.num_query_groups=2"])
    step = tmp_path / "step_00000001"
    (step / "model").mkdir(parents=True)           # no weights: the refusal comes first
    import yaml

    (step / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    assert mrrtf(["export", str(step), str(tmp_path / "hf")]) == 2
    assert "model.num_query_groups=2" in capsys.readouterr().err
    with pytest.raises(ExportError, match="model.num_query_groups=2.*GPTBigCode"):
        gpt_bigcode.hf_config(config.model, 1200, None, 0, 0)


def test_export_refuses_non_integer_rotary_base():
    with pytest.raises(ExportError, match="model.rotary_base"):
        llama.hf_config(ModelConfig(family="rope", rotary_base=10000.5), 300, None, 0, 0)


# -- import -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_import_then_export_is_bitwise_identical(exported, tmp_path, case):
    first = exported[case]["hf_dir"]
    step = import_checkpoint(first, tmp_path / "imported")
    assert (tmp_path / "imported/checkpoints/latest").read_text().strip() == step.name
    assert (step / "model" / "metadata.json").is_file() and (step / "config.yaml").is_file()
    assert mrrtf(["export", str(tmp_path / "imported"), str(tmp_path / "again")]) == 0
    second = tmp_path / "again"
    for name in ("config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json"):
        assert json.loads((second / name).read_text()) == json.loads((first / name).read_text()), name
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert set(a) == set(b)
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _hf_dir(tmp_path: Path, config) -> Path:
    config.save_pretrained(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("change, option", [
    (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
     "rope_type='linear'"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(mlp_bias=True), "mlp_bias"),
    (dict(hidden_act="gelu"), "hidden_act='gelu'"),
    (dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                           "partial_rotary_factor": 0.5}), "partial_rotary_factor"),
    (dict(head_dim=8), "head_dim=8"),
])
def test_import_refuses_unsupported_llama_options(change, option):
    from transformers import LlamaConfig

    base = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=4, num_key_value_heads=2)
    with pytest.raises(ConfigError, match=re.escape(option)):
        llama.model_config(LlamaConfig(**{**base, **change}))


def test_import_refuses_other_gpt_bigcode_activation_and_unknown_architectures(tmp_path):
    from transformers import GPT2Config, GPTBigCodeConfig

    with pytest.raises(ConfigError, match="activation_function='gelu'"):
        gpt_bigcode.model_config(GPTBigCodeConfig(n_embd=64, n_head=4, activation_function="gelu"))
    with pytest.raises(ConfigError, match="model_type='gpt2'"):
        import_checkpoint(_hf_dir(tmp_path / "gpt2", GPT2Config(n_embd=64, n_head=4)),
                          tmp_path / "out")


# -- tokenizer ----------------------------------------------------------------------------

TOKENIZER_CASES = [
    "def f(x):\n\tif x:\n\t\treturn 1\n",
    "x = 1   \ny = 2\t\n\n\n",
    " " * 40 + "deeply_indented()\n",
    "line one\r\nline two\r\n",
    "s = 'é€😀 中文字符 한국어 日本語'\n",
    "<|endoftext|>x<pad>\n<fim_prefix>a<fim_suffix>b<fim_middle><mask_1><mask_16><eom><sep>",
    "vocab['<unk>'] = 0  # <s>html</s>",
    "", " ", "\t", "\n", "12345678901234567890", "\u00a0\u3000\u200b\ufeffzero width",
]


def test_hf_tokenizer_encodes_and_decodes_exactly_like_sentencepiece(exported, tiny_tokenizer_path):
    from transformers import AutoTokenizer

    sp = spm.SentencePieceProcessor(model_file=str(tiny_tokenizer_path))
    hf = AutoTokenizer.from_pretrained(str(exported["starcoder-mqa"]["hf_dir"]))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("**/*.py"))[::97][:60]
    texts = TOKENIZER_CASES + [f.read_text(encoding="utf-8", errors="replace") for f in files]
    texts.append("".join(TOKENIZER_CASES) * 3)
    for text in texts:
        ids = sp.encode(text)
        assert hf.encode(text, add_special_tokens=False) == ids, text[:80]
        assert hf.decode(ids, skip_special_tokens=False,
                         clean_up_tokenization_spaces=False) == text, text[:80]
    for token in special_tokens():
        assert hf.convert_tokens_to_ids(token) == sp.piece_to_id(token)
    assert len(hf) == sp.get_piece_size()


def test_tokenizer_conversion_refuses_dummy_prefix_models(tmp_path):
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["def f(x): return x\n"] * 200), model_prefix=str(tmp_path / "m"),
        model_type="bpe", vocab_size=280, hard_vocab_limit=False, byte_fallback=True,
        minloglevel=2)  # sentencepiece defaults: dummy prefix, whitespace collapsing
    with pytest.raises(ExportError, match="add_dummy_prefix"):
        sentencepiece_to_tokenizers(tmp_path / "m.model")


# -- integration with the training loop ---------------------------------------------------

@pytest.mark.slow
def test_pretrain_run_directory_exports_and_generates(tiny_data_config, tmp_path):
    """What `mrrtf pretrain` writes (RUN/checkpoints/latest -> step dir) is what export reads."""
    import dataclasses

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pretrain.run import run_pretrain

    c = tiny_data_config
    config = dataclasses.replace(
        c, model=dataclasses.replace(c.model, family="rope", hidden_size=64, num_query_groups=2),
        train=dataclasses.replace(c.train, train_steps=2, warmup_steps=1, micro_batch_size=2,
                                  global_batch_size=2),
        logging=dataclasses.replace(c.logging, run_dir=str(tmp_path / "run"),
                                    wandb_mode="disabled", progress_bar=False))
    summary = run_pretrain(config)     # in this process's world of one, like the other tests
    assert summary["status"] == "completed"
    assert mrrtf(["export", str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    out = model.generate(**tok("def f(", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out.shape[1] == len(tok("def f(")["input_ids"]) + 4


def test_fill_special_tokens_gives_null_bos_and_unk_the_eos_string(tmp_path):
    from megatron_rrtf.convert.hf_tokenizer import fill_special_tokens

    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"eos_token": "</s>", "bos_token": None, "pad_token": "<pad>"}))
    assert fill_special_tokens(path) == ["bos_token", "unk_token"]
    assert json.loads(path.read_text()) == {"eos_token": "</s>", "bos_token": "</s>",
                                            "pad_token": "<pad>", "unk_token": "</s>"}
    assert fill_special_tokens(path) == []                        # nothing left to fill
    path.write_text(json.dumps({"bos_token": None}))              # no eos: left alone
    assert fill_special_tokens(path) == [] and json.loads(path.read_text()) == {"bos_token": None}
