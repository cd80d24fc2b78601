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
  help_asked = [a for a in sys.argv[1:] if a in ("-h", "--help", "--helpshort", "--helpfull")]
  if help_asked:
    # absl's own --help exits with status 1; asking for help is not an error.
    app.usage(shorthelp=help_asked[0] != "--helpfull", writeto_stdout=True, exitcode=0)
  app.run(main)


def parse_own_flags(argv, define_flags, doc):
  """Parses argv (program name first) into a fresh FlagValues; prints help on --help.

  For tools whose flags live outside absl's global FLAGS (hamgan-eval, hamgan-sample), so
  that they can be imported beside the other tools in one process (tests, the demo).
  """
  fv = flags.FlagValues()
  define_flags(fv)
  if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
    print(doc)
    print(fv.get_help())
    sys.exit(0)
  fv(argv)
  return fv


def run_with_own_flags(main, parse_flags):
  """app.run for such a tool: `main` receives the tool's own FlagValues."""
  def parser(argv):
    flags.FLAGS(argv[:1])  # absl's own FLAGS must count as parsed; ours are separate
    return parse_flags(argv)
  app.run(main, flags_parser=parser)
