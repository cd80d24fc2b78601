"""hamgan-sweep: train a grid of settings x seeds, evaluate every run, compare them.

  hamgan-sweep --gin_file=demo_mnist --root=runs/ctx --seeds=0,1,2 \\
      --vary="Generator.context,Discriminator.context=none,sagan" \\
      --gin_param="Generator.context_settings = None" \\
      --gin_param="Discriminator.context_settings = None" \\
      --num_samples=2000 --real_dataset=mnist5k --classifier_path=DIR --manifold
  hamgan-sweep ... --dry_run          # the grid, each run's directory and state; no writes
  hamgan-sweep ... --print_commands   # each run's hamgan-train / hamgan-eval command line

--vary (repeatable; several flags give every combination):
  BINDING=V1,V2,...        one binding takes each value (gin literals; a bare word is a
                           string: none -> 'none')
  B1,B2=V1,V2,...          several bindings take the same value together
  B1=V1,V2;B2=W1,W2        bindings that move together value by value
--seeds binds train.seed; every setting is trained once per seed.

Each run trains into ROOT/<axis>-<value>__...__seed-<seed> (e.g. ROOT/context-sagan__seed-0)
as its own `python -m hamgan.cli.train` subprocess, then `hamgan-eval --all` scores its
milestones with the evaluation flags given here; ROOT/comparison.md, comparison.json and
the plots (groups of seeds: mean, std, 95% interval, best-of-n, Welch tests) come last.
Logs and the grid are in ROOT/.sweep/. Run the same command again to resume: finished
runs are not retrained, half-done ones resume, evaluated milestones are skipped. Exit
status 1 when a run failed (the others still run; failures are listed at the end).
"""
from absl import flags

from hamgan import cli
from hamgan.cli import errors
from hamgan.cli import eval as eval_cli
from hamgan.compare import grid
from hamgan.compare import sweep as sweep_lib

# hamgan-eval's own flags (definitions, help and defaults), passed on when given.
EVAL_FLAGS = ("num_samples", "real_num_samples", "batch_size", "real_dataset", "real_split",
              "data_dir", "classifier_path", "use_ema", "kid", "manifold", "intra_fid",
              "conditional_accuracy", "steps",
              "truncation", "standing_batches", "cache_dir", "force", "progress_every_s")


def define_flags(args):
  """Defines hamgan-sweep's flags on the FlagValues `args` (absl's FLAGS hold hamgan-train's)."""
  flags.DEFINE_multi_string("gin_file", [], "gin experiment file(s), as for hamgan-train "
                            "(a path or a name in gin_configs/, e.g. demo_mnist).",
                            flag_values=args)
  flags.DEFINE_multi_string("vary", [], f"an axis of the grid: {grid.VARY_HELP} (see "
                            "above).", flag_values=args)
  flags.DEFINE_string("seeds", None, "seeds, e.g. 0,1,2,3,4: each setting is trained once "
                      "per seed (train.seed).", flag_values=args)
  flags.DEFINE_string("root", None, "folder of the sweep: one run directory per point, the "
                      "comparison, and .sweep/ (logs, the grid).", flag_values=args)
  flags.DEFINE_multi_string("gin_param", [], "a gin binding for every run, e.g. "
                            "\"train.num_steps = 600\".", flag_values=args)
  flags.DEFINE_integer("parallel", 1, "runs trained at once (one per free core or device; "
                       "runs side by side share the machine, so their it/s do too).",
                       lower_bound=1, flag_values=args)
  flags.DEFINE_integer("max_runs", None, "train at most this many runs in this call; the "
                       "next call goes on (done runs are still evaluated and compared).",
                       lower_bound=0, flag_values=args)
  flags.DEFINE_boolean("evaluate", True, "evaluate every run's milestones (hamgan-eval "
                       "--all); --noevaluate trains and compares only.", flag_values=args)
  flags.DEFINE_multi_string("eval_flag", [], "one more hamgan-eval flag for every run, "
                            "as written, e.g. --eval_flag=--seed=3.", flag_values=args)
  flags.DEFINE_boolean("dry_run", False, "check the grid (every setting resolved as "
                       "hamgan-train would) and print each run's directory and state; "
                       "writes nothing.", flag_values=args)
  flags.DEFINE_boolean("print_commands", False, "print each run's hamgan-train and "
                       "hamgan-eval command line (for other hosts or launch/) and the "
                       "hamgan-compare one; runs and writes nothing.", flag_values=args)
  source = flags.FlagValues()
  eval_cli.define_flags(source)
  for name in EVAL_FLAGS:
    flags.DEFINE_flag(source[name], args)


def parse_flags(argv):
  """Parses argv (program name first) into a fresh FlagValues; prints help on --help."""
  return cli.parse_own_flags(argv, define_flags, __doc__)


def eval_args(args):
  """The hamgan-eval flags given on this command line, as hamgan-eval reads them."""
  return [args[n].serialize() for n in EVAL_FLAGS if args[n].present] + list(args.eval_flag)


def sweep_from_flags(args):
  """A hamgan.compare.sweep.Sweep from the flags; ValueError saying what to fix."""
  if not args.gin_file:
    raise ValueError("no --gin_file; pass the experiment every run starts from, e.g. "
                     "--gin_file=demo_mnist.")
  if not args.root:
    raise ValueError("no --root; pass the folder that holds the sweep, e.g. "
                     "--root=runs/sweep.")
  return sweep_lib.Sweep(
      gin_files=list(args.gin_file), axes=[grid.parse_vary(v) for v in args.vary],
      seeds=grid.parse_seeds(args.seeds), root=args.root, gin_params=list(args.gin_param),
      eval_args=eval_args(args), parallel=args.parallel, max_runs=args.max_runs,
      evaluate=args.evaluate)


def main(args):
  sweep = sweep_from_flags(args)
  print(f"hamgan-sweep: checking the settings of {len(sweep.points)} runs ...", flush=True)
  sweep_lib.check(sweep)
  if args.dry_run or args.print_commands:
    if args.dry_run:
      print("\n".join(sweep_lib.describe(sweep)))
    if args.print_commands:
      for point in sweep.points:
        print(f"# {point.name}\n" + "\n".join(sweep.commands(point)))
      print("# the comparison, once every run is evaluated\n" + sweep.compare_command())
    print("hamgan-sweep: nothing was trained or written.")
    return 0
  return sweep_lib.run(sweep, write=lambda line: print(line, flush=True))


TOOL = errors.Tool("hamgan-sweep", main, parse_flags)
run = TOOL.run  # the console entry point: every error becomes one line


if __name__ == "__main__":
  run()
