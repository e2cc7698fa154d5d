"""Our sentencepiece BPE model -> a Hugging Face fast tokenizer (tokenizer.json) that encodes and
decodes exactly as sentencepiece does.

sentencepiece's BPE encoder, with our training settings (identity normalisation, no dummy prefix,
no whitespace collapsing), does this to a text:
  1. user-defined pieces (our special tokens) are cut out first and emitted whole;
  2. spaces become "▁" (escape_whitespaces) -- nothing else is normalised;
  3. the rest, split into characters, is merged pairwise: at each step the adjacent pair whose
     concatenation is a normal piece with the highest score (earliest id on ties) is merged,
     leftmost first;
  4. characters that are not pieces become <0xXX> byte pieces (byte_fallback).
The `tokenizers` pipeline below mirrors each step: special tokens as added tokens (1), a
Replace normalizer (2), BPE with merges ranked by the merged piece's (score, id) (3) and
byte_fallback (4). There is no pre-tokenizer: sentencepiece does not split words at encode time.
Decoding: "▁" -> " ", byte pieces -> bytes (ByteFallback), Fuse.
"""

from __future__ import annotations

import json
from pathlib import Path

from megatron_rrtf.errors import ExportError
from megatron_rrtf.tokenizer.special_tokens import EOD, PAD

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
"""sentencepiece ModelProto.SentencePiece.Type values."""


def _load_proto(model_path: Path):
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(Path(model_path).read_bytes())
    return proto


def _check_settings(proto, model_path: Path) -> None:
    """Refuse sentencepiece settings this conversion does not reproduce exactly."""
    t, n = proto.trainer_spec, proto.normalizer_spec
    problems = []
    if t.model_type != 2:  # BPE
        problems.append(f"model_type={t.model_type} (need BPE)")
    if n.add_dummy_prefix:
        problems.append("add_dummy_prefix=true")
    if n.remove_extra_whitespaces:
        problems.append("remove_extra_whitespaces=true")
    if n.precompiled_charsmap or n.name not in ("identity", ""):
        problems.append(f"normalization_rule_name={n.name!r} (need identity)")
    if not n.escape_whitespaces:
        problems.append("escape_whitespaces=false")
    if t.treat_whitespace_as_suffix:
        problems.append("treat_whitespace_as_suffix=true")
    if problems:
        raise ExportError(f"sentencepiece model {model_path} cannot be converted exactly to a "
                          f"Hugging Face tokenizer: {', '.join(problems)}; train it with "
                          "`mrrtf tokenizer train`")


def sentencepiece_to_tokenizers(model_path: str | Path):
    """A `tokenizers.Tokenizer` equivalent to the sentencepiece BPE model at `model_path`."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE

    model_path = Path(model_path)
    proto = _load_proto(model_path)
    _check_settings(proto, model_path)
    pieces = list(proto.pieces)
    vocab = {p.piece: i for i, p in enumerate(pieces)}
    # sentencepiece merges only normal pieces; rank a merge by its result's (score desc, id asc).
    normal = {p.piece: (-p.score, i) for i, p in enumerate(pieces) if p.type == NORMAL}
    ranked = []
    for piece, rank in normal.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in normal and right in normal:
                ranked.append((rank, cut, left, right))
    merges = [(left, right) for _, _, left, right in sorted(ranked)]
    unk = pieces[proto.trainer_spec.unk_id].piece
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True,
                        byte_fallback=proto.trainer_spec.byte_fallback, ignore_merges=False))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    user_defined = [p.piece for p in pieces if p.type == USER_DEFINED]
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False, single_word=False,
                                       lstrip=False, rstrip=False) for p in user_defined])
    return tok


def export_tokenizer(model_path: str | Path, out_dir: str | Path,
                     model_max_length: int | None = None) -> dict[str, int]:
    """Write tokenizer.json + tokenizer_config.json for our sentencepiece model into `out_dir`.

    eos is EOD, pad is <pad> (EOD when absent). bos and unk are EOD too, as StarCoder declares
    them: converters (CTranslate2's) read all four as strings and refuse a null. unk is not
    sentencepiece's "<unk>" piece: transformers would register that as an added token and
    split the literal text "<unk>" (common in NLP code) into one id, which sentencepiece never
    does; EOD already is a special token, so naming it changes no encoding. With byte fallback
    <unk> is never produced anyway (the BPE model keeps it as its internal unk piece). bos is
    declared, never added (add_bos_token false, no post-processor). Returns {eos_token_id,
    pad_token_id}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = sentencepiece_to_tokenizers(model_path)
    tok.save(str(out_dir / "tokenizer.json"))
    vocab = tok.get_vocab()
    if EOD not in vocab:
        raise ExportError(f"tokenizer {model_path} has no {EOD} piece: the exported model needs it "
                          "as eos_token; train the tokenizer with `mrrtf tokenizer train`")
    pad = PAD if PAD in vocab else EOD
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOD,
        "pad_token": pad,
        "bos_token": EOD,
        "unk_token": EOD,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length or 1_000_000_000_000_000_019_884_624_838_656,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {"eos_token_id": vocab[EOD], "pad_token_id": vocab[pad]}


def fill_special_tokens(config_path: str | Path) -> list[str]:
    """Give a tokenizer_config.json's null or missing bos_token / unk_token the eos token's
    string (as StarCoder declares them), so converters that read all four as strings accept
    it. A config without an eos_token is left alone. Returns the keys filled."""
    config_path = Path(config_path)
    if not config_path.is_file():
        return []
    config = json.loads(config_path.read_text())
    eos = config.get("eos_token")
    if eos is None:
        return []
    filled = [key for key in ("bos_token", "unk_token") if config.get(key) is None]
    if filled:
        config.update({key: eos for key in filled})
        config_path.write_text(json.dumps(config, indent=2) + "\n")
    return filled
