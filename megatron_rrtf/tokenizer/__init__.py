"""Tokenizers: our sentencepiece models and any Hugging Face tokenizer behind one interface."""

from megatron_rrtf.tokenizer.base import Tokenizer
from megatron_rrtf.tokenizer.loader import load_tokenizer
from megatron_rrtf.tokenizer.special_tokens import SpecialTokenIds, special_tokens
from megatron_rrtf.tokenizer.train import train_tokenizer, train_tokenizer_from_texts

__all__ = ["Tokenizer", "load_tokenizer", "SpecialTokenIds", "special_tokens", "train_tokenizer",
           "train_tokenizer_from_texts"]
