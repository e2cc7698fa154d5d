"""RRTF (PanGu-Coder2) pure parts: problems, decontamination, evolution, code extraction,
test-based ranking, ranking losses and candidate packing. File and process effects live in
`align/` and `mrrtf.commands.rrtf_cmd`; see docs/rrtf.md for the choices made here."""
