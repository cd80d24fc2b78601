"""hamgan-bench: the benchmarks, by sub-command.

    hamgan-bench modules [--shapes=g32,d32] ...   context modules: time, MACs, memory
    hamgan-bench step [...]                       training iterations per second
    hamgan-bench eval [...]                       evaluator overhead vs bare G + classifier
    hamgan-bench device-check [--mode=tiny]       one Markdown report of absolute figures
    hamgan-bench bn-stats --model_dir=RUN ...     G's FID with stored vs standing BN statistics

Each sub-command answers --help and prints Markdown tables of ratios measured in one
process (or one run), and appends its rows to a JSON-lines file.
"""
import importlib
import sys

from hamgan.cli import errors

SUBCOMMANDS = {
    "modules": "hamgan.bench.modules",
    "step": "hamgan.bench.step",
    "eval": "hamgan.bench.eval",
    "device-check": "hamgan.bench.device_check",
    "bn-stats": "hamgan.bench.bn_stats",
}


def main(argv):
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(__doc__.strip())
    return 0 if len(argv) >= 2 else 2
  name = argv[1]
  if name not in SUBCOMMANDS:
    print(f"hamgan-bench: unknown sub-command {name!r}; expected one of "
          f"{', '.join(SUBCOMMANDS)} (see hamgan-bench --help).", file=sys.stderr)
    return 2
  importlib.import_module(SUBCOMMANDS[name]).main(argv[2:])
  return 0


# Its sub-commands parse their own arguments (argparse), so no absl app around them.
TOOL = errors.Tool("hamgan-bench", main, parse=list, absl_app=False)
run = TOOL.run  # the console entry point: every error becomes one line


if __name__ == "__main__":
  run()
