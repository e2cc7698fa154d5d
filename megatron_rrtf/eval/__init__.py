"""Evaluation: a sandbox whose verdicts the candidate cannot forge, pass@k, HumanEval, infilling
tasks and batched sampling. Import the submodules directly; this package imports nothing heavy
because the sandbox's child processes import parts of it at start-up."""
