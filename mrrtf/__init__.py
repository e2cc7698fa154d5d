"""The `mrrtf` command line: one verb -> one module (`mrrtf/commands/`). It sits on top of both
stages (`pretrain/`, `align/`) and the library (`megatron_rrtf/`); nothing imports it."""
