"""`mrrtf`: one verb -> one module table. Each module in megatron_rrtf.commands exposes
HELP, add_arguments(parser) and run(args) -> exit code; heavy imports stay inside run()."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from megatron_rrtf.errors import MrrtfError

# verb -> module; only verbs that work are registered.
COMMANDS: dict[str, str] = {
    "config": "megatron_rrtf.commands.config_cmd",
    "humaneval": "megatron_rrtf.commands.humaneval_cmd",
    "rrtf": "megatron_rrtf.commands.rrtf_cmd",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
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
