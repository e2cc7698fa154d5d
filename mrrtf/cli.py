"""`mrrtf`: one verb -> one module table. Each module in mrrtf.commands exposes
HELP, add_arguments(parser) and run(args) -> exit code; heavy imports stay inside run()."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from megatron_rrtf.errors import MrrtfError

# verb -> module; only verbs that work are registered.
COMMANDS: dict[str, str] = {
    "config": "mrrtf.commands.config_cmd",
    "rrtf": "mrrtf.commands.rrtf_cmd",
    "tokenizer": "mrrtf.commands.tokenizer_cmd",
    "preprocess": "mrrtf.commands.preprocess_cmd",
    "data": "mrrtf.commands.data_cmd",
    "pretrain": "mrrtf.commands.pretrain",
    "launch": "mrrtf.commands.launch",
    "plan": "mrrtf.commands.plan",
    "export": "mrrtf.commands.export",
    "import": "mrrtf.commands.import_cmd",
    "plot": "mrrtf.commands.plot",
    "demo": "mrrtf.commands.demo",
    "eval": "mrrtf.commands.eval_cmd",
    "compare": "mrrtf.commands.compare",
    "compare-demo": "mrrtf.commands.compare_demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrrtf",
        description="Pretrain code LMs with CodeGen2 objectives on megatron-core; align with RRTF.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def quiet_third_party() -> None:
    """megatron-core logs every parameter group and warns that optional CUDA extensions (Apex,
    TransformerEngine) are absent; useful with -v, noise otherwise."""
    import warnings

    for name in ("megatron", "matplotlib", "datasets", "httpx", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*(Apex|Transformer Engine|TransformerEngine)")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*cuda_graph_scope")
    warnings.filterwarnings("ignore", message=r".*checkpoint\.load_state_dict")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        quiet_third_party()
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 speaks for the job
        logging.getLogger().setLevel(logging.WARNING)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except MrrtfError as exc:
        print(f"mrrtf {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
