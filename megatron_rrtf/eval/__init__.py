"""Evaluation: pass@k, HumanEval, infilling tasks and their prompt formats, held-out perplexity,
checkpoint evaluation (`mrrtf eval`) and run comparison reports. Programs are scored by
`megatron_rrtf.sandbox`; completions come from `megatron_rrtf.generation`."""
