"""Continuing from a public StarCoder-family base: `mrrtf import` of a GPTBigCode whose tokenizer
has StarCoder's FIM tokens but not ours maps the ones it has, adds the rest, grows the embedding
and output rows at the mean of the old rows, keeps the old logits, and pretraining (span + FIM)
and RRTF train on the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_training_texts, write_tiny_corpus

from megatron_rrtf.convert.token_extension import plan_special_tokens, set_new_rows
from megatron_rrtf.tokenizer.special_tokens import (
    EOD,
    EOM,
    FIM_MIDDLE,
    FIM_PAD,
    FIM_PREFIX,
    FIM_SUFFIX,
    PAD,
    SEP,
    mask_token,
    special_tokens,
)
from mrrtf.cli import main as mrrtf

STARCODER_SPECIALS = ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>",
                      "<fim_pad>", "<filename>", "<gh_stars>"]
SEQ = 256


def _byte_level_tokenizer(specials: list[str], texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def save_tiny_starcoder(path: Path) -> Path:
    """A random untied 2-layer MQA GPTBigCode + a byte-level BPE tokenizer trained here with
    StarCoder's special tokens (none of <pad>, <sep>, <eom>, <mask_k>)."""
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM, PreTrainedTokenizerFast

    tok = _byte_level_tokenizer(STARCODER_SPECIALS, tiny_training_texts(), 700)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                     bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPTBigCodeForCausalLM(GPTBigCodeConfig(
        vocab_size=len(hf_tok), n_positions=SEQ, n_embd=64, n_layer=2, n_head=4, n_inner=128,
        activation_function="gelu_pytorch_tanh", multi_query=True, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=0))
    with torch.no_grad():  # off the init: biases and norms too, so "unchanged" can fail
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


def test_plan_maps_family_names_and_eos_and_adds_the_rest_in_order():
    vocab = {"a": 0, "<fim-prefix>": 1, "<fim_middle>": 2, "</s>": 3}
    plan = plan_special_tokens(vocab, 4, eos_token="</s>")
    assert plan.aliases == {FIM_PREFIX: "<fim-prefix>", EOD: "</s>"}
    assert plan.existing == {EOD: 3, FIM_PREFIX: 1, FIM_MIDDLE: 2}
    missing = [t for t in special_tokens() if t not in plan.existing]
    assert plan.added == {t: 4 + i for i, t in enumerate(missing)}
    assert plan.new_size == 4 + len(missing)


def test_new_rows_are_the_mean_of_the_old_rows_and_old_rows_stay():
    table = torch.randn(10, 3)
    out = set_new_rows(table, [6, 8], old_rows=5)
    torch.testing.assert_close(out[6], table[:5].mean(0))
    assert torch.equal(out[8], out[6])
    keep = [0, 1, 2, 3, 4, 5, 7, 9]
    assert torch.equal(out[keep], table[keep])


def test_santacoder_fim_names_and_eos_resolve_through_the_recorded_aliases(tmp_path):
    from transformers import PreTrainedTokenizerFast

    from megatron_rrtf.convert.import_hf import _extend_tokens
    from megatron_rrtf.tokenizer import load_tokenizer

    santacoder = ["</s>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"]
    tok = _byte_level_tokenizer(santacoder, ["def f(x):\n    return x\n"] * 10, 290)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>").save_pretrained(tmp_path)
    plan = _extend_tokens(tmp_path)
    assert plan.aliases == {EOD: "</s>", FIM_PREFIX: "<fim-prefix>", FIM_MIDDLE: "<fim-middle>",
                            FIM_SUFFIX: "<fim-suffix>", FIM_PAD: "<fim-pad>"}
    ours = load_tokenizer(tmp_path)
    ids = ours.special_ids                       # every objective's token resolves
    assert (ids.eod, ids.fim_prefix, ids.fim_pad) == tuple(
        tok.token_to_id(t) for t in ("</s>", "<fim-prefix>", "<fim-pad>"))
    assert ids.sep == plan.added[SEP] and ours.vocab_size == plan.new_size


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("public_base")
    hf_dir = save_tiny_starcoder(root / "starcoder")
    assert mrrtf(["import", str(hf_dir), str(root / "imported")]) == 0
    return dict(root=root, hf_dir=hf_dir, run=root / "imported")


def test_import_adds_missing_tokens_maps_starcoders_and_grows_rows_at_the_mean(imported):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from megatron_rrtf.tokenizer import load_tokenizer

    hf_dir, run = imported["hf_dir"], imported["run"]
    original = AutoModelForCausalLM.from_pretrained(str(hf_dir)).eval()
    old = original.config.vocab_size
    mapping = json.loads((run / "tokenizer" / "mrrtf_special_tokens.json").read_text())
    tok = load_tokenizer(run / "tokenizer")
    for name in STARCODER_SPECIALS[:5]:          # StarCoder's own tokens keep their ids
        assert mapping["existing"][name] == original_id(hf_dir, name) == tok.token_to_id(name)
    added = mapping["added"]
    assert set(added) == {PAD, SEP, EOM} | {mask_token(i) for i in range(1, 17)}
    assert sorted(added.values()) == list(range(old, old + len(added)))
    assert tok.vocab_size == old + len(added) and tok.special_ids.sep == added[SEP]
    assert tok.encode("x<sep>y") == tok.encode("x") + [added[SEP]] + tok.encode("y")

    assert mrrtf(["export", str(run), str(imported["root"] / "exported")]) == 0
    ours = load_file(imported["root"] / "exported" / "model.safetensors")
    theirs = original.state_dict()
    for key in ("transformer.wte.weight", "lm_head.weight"):
        assert ours[key].shape[0] == old + len(added)
        assert torch.equal(ours[key][:old], theirs[key]), f"{key}: old rows changed"
        mean = theirs[key].double().mean(0).float()
        assert all(torch.equal(ours[key][i], mean) for i in added.values()), key
    assert all(torch.equal(ours[k], v) for k, v in theirs.items() if k in ours
               and k not in ("transformer.wte.weight", "lm_head.weight"))

    grown = AutoModelForCausalLM.from_pretrained(str(imported["root"] / "exported")).eval()
    tokens = torch.randint(0, old, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = original(tokens).logits, grown(tokens).logits
    torch.testing.assert_close(after[..., :old], before, rtol=0, atol=1e-5)


def test_keep_tokenizer_imports_the_vocabulary_as_it_is(imported, tmp_path):
    from megatron_rrtf.tokenizer import load_tokenizer

    assert mrrtf(["import", "--keep-tokenizer", str(imported["hf_dir"]), str(tmp_path / "kept")]) == 0
    config = json.loads((imported["hf_dir"] / "config.json").read_text())
    assert load_tokenizer(tmp_path / "kept" / "tokenizer").vocab_size == config["vocab_size"]
    assert not (tmp_path / "kept" / "tokenizer" / "mrrtf_special_tokens.json").exists()


def original_id(hf_dir: Path, name: str) -> int:
    return json.loads((hf_dir / "tokenizer.json").read_text())["model"]["vocab"][name]


@pytest.mark.slow
def test_pretraining_with_span_and_fim_then_rrtf_run_on_the_imported_base(imported, tmp_path):
    from pretrain_runs import read_metrics

    from align.train import run_rrtf_train
    from megatron_rrtf.config import load_config
    from megatron_rrtf.data.preprocess import preprocess
    from pretrain.run import run_pretrain
    from tests.test_align_train import _ranked_set

    run = imported["run"]
    step_config = run / "checkpoints" / "step_00000000" / "config.yaml"
    paths = write_tiny_corpus(tmp_path / "corpus")
    common = ["logging.wandb_mode=disabled", "logging.progress_bar=false",
              "train.micro_batch_size=2", "train.global_batch_size=2", "train.warmup_steps=1",
              f"checkpoint.init_from={run}", "checkpoint.save_interval=0"]
    config = load_config([step_config], [
        f"data.output_dir={tmp_path / 'data'}", "data.workers=1", "data.heldout_fraction=0.1",
        f"data.sources=[{{name: py, domain: code, language: python, dir: '{paths['code']}', "
        "glob: '*.py', weight: 1}]",
        "objectives.rates={causal: 0.2, span: 0.4, fim: 0.4, prefix_lm: 0.0}",
        "train.train_steps=3", f"logging.run_dir={tmp_path / 'pretrain'}", *common])
    preprocess(config, progress=False)
    summary = run_pretrain(config)
    assert summary["status"] == "completed"
    losses = [r["loss"] for r in read_metrics(tmp_path / "pretrain")]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))

    (tmp_path / "rrtf").mkdir()
    ranked = _ranked_set(tmp_path / "rrtf")
    rrtf = load_config([step_config], [
        f"data.tokenizer={run / 'tokenizer'}", "train.train_steps=1",
        f"logging.run_dir={tmp_path / 'rrtf_run'}", *common])
    summary = run_rrtf_train(rrtf, ranked)
    assert summary["status"] == "completed" and summary["step"] == 1
    assert torch.isfinite(torch.tensor(read_metrics(tmp_path / "rrtf_run")[0]["loss"]))
    shutil.rmtree(tmp_path / "data")
