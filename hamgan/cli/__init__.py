"""Command-line entry points: hamgan-train, -eval, -sample, -compare, -bench, the demo.

Each module's `run` is `TOOL.run` for a `hamgan.cli.errors.Tool`: the one place where
errors become one-line messages. Flags that take counts or thresholds are checked when
parsed (`bound_flags`), so a bad value is refused before any work.
"""
import sys

from absl import app
from absl import flags

from hamgan.cli import errors

# The fewest samples a score takes: the 10-split Inception Score needs two per split
# (hamgan.evaluation.scoring.IS_SPLITS; not imported here, it loads TensorFlow).
MIN_SCORED_SAMPLES = (20, "the 10-split Inception Score needs 2 samples per split")


def parse_own_flags(argv, define_flags, doc):
  """Parses argv (program name first) into a fresh FlagValues; prints help on --help.

  For tools whose flags live outside absl's global FLAGS (hamgan-eval, hamgan-sample), so
  that they can be imported beside the other tools in one process (tests, the demo).
  Such tools take flags only: a leftover argument is refused, not ignored.
  """
  args = flags.FlagValues()
  define_flags(args)
  if any(a in errors.HELP_ARGS for a in argv[1:]):
    print(doc)
    print(args.get_help())
    print(errors.HELP_NOTE)
    sys.exit(0)
  rest = args(argv)
  if len(rest) > 1:
    raise app.UsageError(
        f"unexpected argument(s) {rest[1:]}: {argv[0]} takes only --flags (e.g. "
        f"--model_dir={rest[1]}); quote values with spaces, and write booleans as "
        "--flag or --noflag.")
  return args


def _checker(name, minimum, integer, why=""):
  kind = f"an integer >= {minimum}" if integer else "a number > 0"

  def check(value):
    if value is None:
      return True
    if value < minimum or (not integer and value <= 0) or value != value:  # NaN too
      raise flags.ValidationError(f"expected {kind}{why} (or leave --{name} out for its "
                                  f"default); pass e.g. --{name}={max(minimum, 1)}.")
    return True
  return check


def bound_flags(args, minimums=None, positive=(), truncation=None):
  """Registers parse-time checks on `args`: integers >= their minimum, floats > 0, and the
  truncation threshold (hamgan.evaluation.latent's floor); None always passes.

  `minimums` maps a flag to its minimum, or to (minimum, the reason for it).
  """
  for name, minimum in (minimums or {}).items():
    minimum, why = minimum if isinstance(minimum, tuple) else (minimum, "")
    flags.register_validator(name, _checker(name, minimum, True, why and f" ({why})"),
                             flag_values=args)
  for name in positive:
    flags.register_validator(name, _checker(name, 0, False), flag_values=args)
  if truncation:
    def check_truncation(value):
      from hamgan.evaluation import latent  # pylint: disable=g-import-not-at-top
      try:
        latent.check_truncation(value)
      except ValueError as e:
        raise flags.ValidationError(str(e)) from None
      return True
    flags.register_validator(truncation, check_truncation, flag_values=args)
