"""Tokenizers: our sentencepiece models and any Hugging Face tokenizer behind one interface."""
