"""The one place where a hamgan tool's errors become one line on stderr and an exit status.

Every console script (setup.py's console_scripts) and every `python -m hamgan.cli.X` is a
`Tool`: its flag parsing and its main function both run under `Tool.report`, so a bad
flag, a bad value or a bad file ends as

    hamgan-eval: error: <the value, what was expected, the fix>

with a non-zero status and no Python traceback. `--verbose` (any tool, anywhere on the
command line) or HAMGAN_TRACEBACK=1 adds the traceback above that line. A new tool gets
all of this by being a Tool (tests/test_bad_input.py checks that every console script
is one).

Exit statuses: 2 for a flag or argument the tool cannot take (absl's flag errors,
app.UsageError), the tool's `error_status` for a refused input (ValueError, OSError and
the tool's own `expected` error classes; 1 unless the tool says otherwise), 1 for
anything unforeseen (named as such, with a request to report it), 130 for Ctrl-C.
A SystemExit raised by the tool itself keeps its status.
"""
import os
import re
import sys
import traceback

from absl import app
from absl import flags

TRACEBACK_ENV = "HAMGAN_TRACEBACK"
USAGE_STATUS = 2
UNEXPECTED_STATUS = 1
INTERRUPTED_STATUS = 130
HELP_ARGS = ("-h", "--help", "--helpshort", "--helpfull")
HELP_NOTE = ("On an error every hamgan tool prints one line and exits non-zero; add "
             f"--verbose (or set {TRACEBACK_ENV}=1) for the Python traceback.")
_TRUE = ("1", "true", "yes", "on")
_VERBOSE = re.compile(r"^--(no)?verbose(=(.*))?$")
_RUNNING = {"verbose": False}  # --verbose of the tool running now (a main may report too)


def split_verbose(argv):
  """(argv without --verbose / --noverbose / --verbose=BOOL, whether a traceback is asked)."""
  kept, verbose = [], False
  for i, arg in enumerate(argv):
    match = _VERBOSE.match(arg) if i > 0 else None
    if match is None:
      kept.append(arg)
    elif match.group(1):
      verbose = False
    else:
      verbose = match.group(3) is None or match.group(3).strip().lower() in _TRUE
  return kept, verbose


def traceback_wanted(verbose=False):
  """`verbose`, the running tool's --verbose, or HAMGAN_TRACEBACK=1/true/yes/on."""
  return (bool(verbose) or _RUNNING["verbose"]
          or os.environ.get(TRACEBACK_ENV, "").strip().lower() in _TRUE)


def exit_status(code):
  """The process status sys.exit(code) gives (None: 0; a message: 1)."""
  if code is None or code is False:
    return 0
  if code is True:
    return 1
  return code if isinstance(code, int) else 1


def _one_line(text):
  """A message's lines as one: a line that ends without punctuation gets a ';'."""
  lines = [" ".join(line.split()) for line in str(text).splitlines()]
  joined = ""
  for line in filter(None, lines):
    if joined:
      joined += (" " if joined[-1] in ".:;,!?" else "; ")
    joined += line
  return joined


class Tool:
  """A command-line tool: its name, how argv becomes main's argument, and main.

  Args:
    name: the command as users type it ("hamgan-eval"); every message starts with it.
    main: called with what `parse` returns; its return value is the exit status.
    parse: argv (program name first) -> main's argument, raising on bad flags. None:
      absl's global FLAGS parse argv, and main receives the remaining arguments.
    doc, key_flags: the usage text and the global flags --help lists (parse=None).
    expected: exception classes that are refusals of the tool's own (messages that say
      what to fix) besides ValueError and OSError.
    error_status: the exit status of a refusal.
    absl_app: run under absl's app.run (its logging set-up); False for tools that parse
      their own arguments (hamgan-bench).
  """

  def __init__(self, name, main, parse=None, doc=None, key_flags=(), expected=(),
               error_status=1, absl_app=True):
    self.name, self.main, self.parse = name, main, parse
    self.doc, self.key_flags = doc, tuple(key_flags)
    self.expected, self.error_status, self.absl_app = tuple(expected), error_status, absl_app

  # ------------------------------------------------------------ what an error becomes

  def describe(self, error):
    """(exit status, one line) for `error`."""
    if isinstance(error, KeyboardInterrupt):
      return INTERRUPTED_STATUS, "interrupted (Ctrl-C); stopped where it was."
    if isinstance(error, (flags.Error, app.UsageError)):
      return USAGE_STATUS, f"{_one_line(error)} (see {self.name} --help)"
    if isinstance(error, (ValueError, OSError) + self.expected):
      return self.error_status, _one_line(error) or type(error).__name__
    first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return UNEXPECTED_STATUS, (
        f"unexpected {type(error).__name__}{': ' + first if first else ''} (not a refusal "
        f"hamgan foresaw; rerun with --verbose or {TRACEBACK_ENV}=1 for the traceback, "
        "and please report it).")

  def report(self, error, verbose=False):
    """Prints `error` as one line (its traceback first when `verbose`); returns the status.

    A SystemExit is the tool's own decision: its message, if any, is printed as is.
    """
    if isinstance(error, SystemExit):
      if error.code is not None and not isinstance(error.code, int):
        print(error.code, file=sys.stderr)
      return exit_status(error.code)
    if verbose:
      traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    status, line = self.describe(error)
    print(f"{self.name}: error: {line}", file=sys.stderr, flush=True)
    return status

  # ------------------------------------------------------------ running

  def _parse(self, argv):
    if self.parse is not None:
      return self.parse(argv)
    flags.FLAGS.unparse_flags()  # a fresh process's defaults, also when called in-process
    return flags.FLAGS(argv)

  def call(self, argv, verbose=None):
    """Runs the tool in this process on argv (program name first); returns the status.

    What a user sees on stderr is what the console script prints, without absl's
    process set-up (tests call tools this way; wrap global-FLAGS tools in flagsaver).
    """
    argv, asked = split_verbose(list(argv))
    verbose = traceback_wanted(asked) if verbose is None else verbose
    before, _RUNNING["verbose"] = _RUNNING["verbose"], verbose
    try:
      return exit_status(self.main(self._parse(argv)))
    except BaseException as e:  # pylint: disable=broad-except  # every error: one line
      return self.report(e, verbose)
    finally:
      _RUNNING["verbose"] = before

  def run(self, argv=None):
    """The console entry point: parses sys.argv, runs main, exits with its status."""
    argv, asked = split_verbose(list(sys.argv if argv is None else argv))
    verbose = _RUNNING["verbose"] = traceback_wanted(asked)
    if not self.absl_app:
      sys.exit(self.call(argv, verbose))
    if self.parse is None:
      self._prepare_help(argv)

    def parser(args):
      try:
        parsed = self._parse(args)
      except Exception as e:  # pylint: disable=broad-except
        sys.exit(self.report(e, verbose))
      if not flags.FLAGS.is_parsed():
        flags.FLAGS(args[:1])  # absl's own flags count as parsed; the tool's are separate
      return parsed

    def guarded_main(parsed):
      try:
        return self.main(parsed)
      except (Exception, KeyboardInterrupt) as e:  # pylint: disable=broad-except
        return self.report(e, verbose)

    app.run(guarded_main, argv=argv, flags_parser=parser)

  def _prepare_help(self, argv):
    """absl's --help for a console script lists our flags and exits 0 (absl's exits 1).

    absl lists the flags of the __main__ module; under a console script that is the
    generated wrapper, which defines none, so the tool's flags become key flags of the
    program (argv[0]) and its docstring the usage text.
    """
    main_module = sys.modules["__main__"]
    if self.doc and not getattr(main_module, "__doc__", None):
      main_module.__doc__ = self.doc
    for name in self.key_flags:
      flags.FLAGS.register_key_flag_for_module(argv[0], flags.FLAGS[name])
    asked = [a for a in argv[1:] if a in HELP_ARGS]
    if asked:
      app.usage(shorthelp=asked[0] != "--helpfull", writeto_stdout=True)
      print(HELP_NOTE)
      sys.exit(0)
