"""The execution sandbox: runs untrusted generated code against its tests and returns a verdict
the code cannot forge (docs/sandbox.md: design, threat model, known gaps).

    from megatron_rrtf.sandbox import Job, SandboxLimits, run_many, run_program
    run_program("def add(a, b):\n    return a + b\n", "assert add(1, 2) == 3").outcome  # "passed"

Modules: `runner` (run_program / run_many: the parent's side), `verdict` (outcome rules),
`zygote` (the fork server), `judge` (the trusted test process), `candidate` (the confined
candidate process), `case_plan` (test script -> cases), `wire` (the plain-data protocol),
`confinement` (namespaces, rlimits, privilege drop). The child-side modules use the standard
library only. Nothing here touches the disk or starts a process at import.
"""

from megatron_rrtf.sandbox.runner import (
           Job,
           SandboxLimits,
           run_many,
           run_program,
           sandbox_uid_range,
)
from megatron_rrtf.sandbox.verdict import ExecutionResult, Outcome

__all__ = ["ExecutionResult", "Job", "Outcome", "SandboxLimits", "run_many", "run_program",
           "sandbox_uid_range"]
