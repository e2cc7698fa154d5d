"""Shared test helpers for the RRTF tests (not a test module)."""

import torch.nn.functional as F
from torch import nn


class TinyCausalLM(nn.Module):
    """Two pre-norm blocks, learned positions, SDPA with an explicit [R, 1, S, S] mask."""

    def __init__(self, vocab=50, dim=32, heads=4, layers=2, max_pos=128):
        super().__init__()
        self.heads = heads
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_pos, dim)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"ln1": nn.LayerNorm(dim), "qkv": nn.Linear(dim, 3 * dim),
                           "proj": nn.Linear(dim, dim), "ln2": nn.LayerNorm(dim),
                           "mlp": nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(),
                                                nn.Linear(4 * dim, dim))})
            for _ in range(layers))
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens, position_ids, attention_mask):
        b, s = tokens.shape
        x = self.embed(tokens) + self.pos(position_ids)                  # (B, S, D)
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).chunk(3, dim=-1)
            q, k, v = (t.view(b, s, self.heads, -1).transpose(1, 2) for t in (q, k, v))
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=~attention_mask)
            x = x + blk["proj"](att.transpose(1, 2).reshape(b, s, -1))
            x = x + blk["mlp"](blk["ln2"](x))
        return self.head(x)                                              # (B, S, V)


def save_tiny_hf_model(path):
    """A 1-layer random Llama + a BPE tokenizer trained here, saved as an HF directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["def f(x):\n    return x + 1\n"] * 20, trainers.BpeTrainer(
        vocab_size=280, special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                     pad_token="<pad>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=512))
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path
