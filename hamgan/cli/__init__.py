"""Command-line entry points: hamgan-train, -eval, -sample, -compare, -bench, the demo."""
import sys

from absl import app
from absl import flags


def run_with_help(main, doc, flag_names):
  """absl's app.run for a console script, with --help showing `doc` and our flags.

  absl's --help lists the flags of the __main__ module; under a console script that is
  the generated wrapper, which defines none, so the tool's own flags are registered as
  key flags of the program (sys.argv[0]) and its docstring becomes the usage text.
  """
  main_module = sys.modules["__main__"]
  if not getattr(main_module, "__doc__", None):
    main_module.__doc__ = doc
  for name in flag_names:
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
  app.run(main)
