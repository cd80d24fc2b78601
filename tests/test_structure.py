"""The package's shape: no import cycle, short files, tools that answer --help, and
command examples in the docs that name only flags the tools define.

These read the source (ast) and run the installed console scripts (subprocesses, as
tests/test_train_cli.py does for hamgan-train); they import no model code.
"""
import ast
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "hamgan")
MAX_LINES = 400
BIN_DIR = os.path.dirname(sys.executable)


# ------------------------------------------------------------------ imports

def package_modules(root=PACKAGE, package="hamgan"):
  """{module name: file path} of every .py under `root` (packages by their __init__)."""
  found = {}
  for folder, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
    rel = os.path.relpath(folder, root)
    prefix = package if rel == "." else package + "." + rel.replace(os.sep, ".")
    for f in sorted(files):
      if f.endswith(".py"):
        name = prefix if f == "__init__.py" else f"{prefix}.{f[:-3]}"
        found[name] = os.path.join(folder, f)
  return found


def _resolve(name, modules):
  """`name` if it is a module or package of `modules`, else its longest such prefix."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def import_graph(modules, package="hamgan"):
  """{module: {modules it imports}}, counting imports anywhere (functions included).

  `from pkg import x` points at the module pkg.x when x is one, else at pkg itself
  (x is then a name pkg's __init__ defines). A parent package's __init__, which Python
  runs first, is not an edge: every submodule would otherwise "cycle" through the
  package that re-exports it.
  """
  graph = {}
  for name, path in modules.items():
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), filename=path)
    is_package = path.endswith("__init__.py")
    targets = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        bases = [alias.name for alias in node.names]
        names = [None] * len(bases)
      elif isinstance(node, ast.ImportFrom):
        if node.level:
          parts = name.split(".")
          keep = len(parts) - node.level + (1 if is_package else 0)
          base = ".".join(parts[:keep] + ([node.module] if node.module else []))
        else:
          base = node.module
        bases = [base] * len(node.names)
        names = [alias.name for alias in node.names]
      else:
        continue
      for base, member in zip(bases, names):
        if not base or not (base == package or base.startswith(package + ".")):
          continue
        full = f"{base}.{member}" if member else base
        target = _resolve(full if full in modules else base, modules)
        if target and target != name:
          targets.add(target)
    graph[name] = targets
  return graph


def find_cycles(graph):
  """Every strongly connected group of 2+ modules, each as one cycle path through it."""
  index, low, on_stack, stack, groups = {}, {}, set(), [], []
  counter = [0]

  def visit(v):  # Tarjan's algorithm; the graph has ~70 nodes, recursion is fine
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1:
        groups.append(sorted(group))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return [_cycle_path(graph, group) for group in groups]


def _cycle_path(graph, group):
  """A shortest path a -> ... -> a inside one strongly connected group."""
  start, members = group[0], set(group)
  previous = {start: None}
  queue = [start]
  while queue:
    v = queue.pop(0)
    for w in sorted(graph[v] & members):
      if w == start:
        path = [v]
        while previous[path[-1]] is not None:
          path.append(previous[path[-1]])
        return path[::-1] + [start]
      if w not in previous:
        previous[w] = v
        queue.append(w)
  raise AssertionError(f"no cycle through {group}")


def test_import_walker_on_a_small_package(tmp_path):
  """The walker itself: absolute, relative and function-level imports, a name a
  package's __init__ defines, and cycles through a function-level import."""
  sources = {
      "__init__.py": "from fakepkg.sub import thing\n",
      "c.py": "import os\nfrom .sub import thing\n",
      "sub/__init__.py": "thing = 1\nfrom . import a\n",
      "sub/a.py": "def f():\n  from fakepkg.sub import b\n  return b\n",
      "sub/b.py": "from . import a\nimport fakepkg.c\n",
  }
  for rel, text in sources.items():
    (tmp_path / "fakepkg" / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "fakepkg" / rel).write_text(text)
  graph = import_graph(package_modules(str(tmp_path / "fakepkg"), "fakepkg"), "fakepkg")
  assert graph == {
      "fakepkg": {"fakepkg.sub"},
      "fakepkg.c": {"fakepkg.sub"},
      "fakepkg.sub": {"fakepkg.sub.a"},
      "fakepkg.sub.a": {"fakepkg.sub.b"},
      "fakepkg.sub.b": {"fakepkg.sub.a", "fakepkg.c"},
  }
  # c -> sub (its __init__ defines `thing`) -> a -> b -> c: one group, named as a path.
  assert find_cycles(graph) == [
      ["fakepkg.c", "fakepkg.sub", "fakepkg.sub.a", "fakepkg.sub.b", "fakepkg.c"]]
  graph["fakepkg.sub.b"] = {"fakepkg.sub.a"}
  assert find_cycles(graph) == [["fakepkg.sub.a", "fakepkg.sub.b", "fakepkg.sub.a"]]
  graph["fakepkg.sub.b"] = set()
  assert find_cycles(graph) == []


def test_no_import_cycle_in_hamgan():
  cycles = find_cycles(import_graph(package_modules()))
  assert not cycles, "import cycles in hamgan/ (imports inside functions count too):\n" + \
      "\n".join("  " + " -> ".join(c) for c in cycles)


# ------------------------------------------------------------------ file size

def test_no_file_in_hamgan_over_400_lines():
  long_files = []
  for name, path in package_modules().items():
    with open(path, encoding="utf-8") as f:
      n = sum(1 for _ in f)
    if n > MAX_LINES:
      long_files.append(f"{os.path.relpath(path, REPO)}: {n} lines")
  assert not long_files, (f"files over {MAX_LINES} lines (split them along their "
                          "concepts):\n  " + "\n  ".join(long_files))


# ------------------------------------------------------------------ functions, layers, indexes

MAX_FUNCTION_LINES = 60
# Blocks of flag definitions: long by nature, one statement per flag.
FLAG_BLOCKS = ("define_flags",)
# Names that belong to the tests' fault injection, never to the package.
TEST_ONLY_NAMES = ("PoisonData", "inject_nan", "FAULT INJECTION")


def long_functions(path, limit=MAX_FUNCTION_LINES, exempt=FLAG_BLOCKS):
  """['file:line name (N lines)'] of functions in `path` longer than `limit` lines."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  found = []
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in exempt:
      n = node.end_lineno - node.lineno + 1
      if n > limit:
        found.append(f"{os.path.relpath(path, REPO)}:{node.lineno} {node.name} ({n} lines)")
  return found


def test_long_function_finder(tmp_path):
  body = "\n".join(f"  x{i} = {i}" for i in range(61))
  path = tmp_path / "m.py"
  path.write_text(f"def long():\n{body}\n\ndef define_flags():\n{body}\n\n"
                  "def short():\n  return 1\n")
  assert [f.split(" ", 1)[1] for f in long_functions(str(path))] == ["long (62 lines)"]


def test_no_function_in_hamgan_over_60_lines():
  found = [f for path in package_modules().values() for f in long_functions(path)]
  assert not found, (f"functions over {MAX_FUNCTION_LINES} lines (split them into named "
                     "steps):\n  " + "\n  ".join(found))


def test_no_thread_local_state_in_layers():
  for path in glob.glob(os.path.join(PACKAGE, "layers", "*.py")):
    with open(path, encoding="utf-8") as f:
      assert "threading.local" not in f.read(), (
          f"{os.path.relpath(path, REPO)} keeps thread-local state: pass it as an argument")


def test_no_test_only_names_in_the_package():
  for path in package_modules().values():
    with open(path, encoding="utf-8") as f:
      text = f.read()
    for name in TEST_ONLY_NAMES:
      assert name not in text, f"{os.path.relpath(path, REPO)} names {name!r}: tests/ only"


def test_every_package_index_names_exactly_its_modules():
  """A package __init__ that lists its modules (a `Modules` block of `name  text` lines)
  lists every module of the package and no other."""
  for init in glob.glob(os.path.join(PACKAGE, "**", "__init__.py"), recursive=True):
    folder = os.path.dirname(init)
    with open(init, encoding="utf-8") as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    if "Modules" not in doc:
      continue
    block = doc.split("Modules", 1)[1].split("\n\n")[0]
    listed = set(re.findall(r"^\s{2}(\w+)\s{2,}", block, re.M))
    actual = {f[:-3] for f in os.listdir(folder)
              if f.endswith(".py") and f != "__init__.py"}
    assert listed == actual, (f"{os.path.relpath(init, REPO)}: listed but missing "
                              f"{sorted(listed - actual)}, present but not listed "
                              f"{sorted(actual - listed)}")


@pytest.mark.parametrize("package", ["hamgan.evaluation", "hamgan.compare"])
def test_evaluation_and_compare_import_nothing_from_training(package):
  graph = import_graph(package_modules())
  found = sorted(f"{m} -> {t}" for m, targets in graph.items()
                 if m == package or m.startswith(package + ".")
                 for t in targets if t.startswith("hamgan.training"))
  assert not found, "\n".join(found)


# ------------------------------------------------------------------ tools and --help

def console_scripts():
  """{script name: 'module:function'} from setup.py's entry_points."""
  with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "entry_points":
      entry_points = ast.literal_eval(node.value)
      return dict(line.replace(" ", "").split("=", 1)
                  for line in entry_points["console_scripts"])
  raise AssertionError("setup.py has no entry_points")


def _module_path(module):
  return os.path.join(REPO, *module.split(".")) + ".py"


def defined_flags(module):
  """Flags a module defines in its source: absl DEFINE_*("name") and argparse
  add_argument("--name") calls (hidden ones, help=argparse.SUPPRESS, left out)."""
  with open(_module_path(module), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  found = set()
  for node in ast.walk(tree):
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
      continue
    first = node.args[0].value
    if node.func.attr.startswith("DEFINE_"):
      found.add(first)
    elif node.func.attr == "add_argument" and first.startswith("--"):
      hidden = any(k.arg == "help" and isinstance(k.value, ast.Attribute)
                   and k.value.attr == "SUPPRESS" for k in node.keywords)
      if not hidden:
        found.add(first[2:])
  return found


def bench_subcommands():
  """{sub-command: module} of hamgan-bench, read from hamgan/cli/bench.py."""
  with open(_module_path("hamgan.cli.bench"), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if (isinstance(node, ast.Assign) and len(node.targets) == 1
        and getattr(node.targets[0], "id", None) == "SUBCOMMANDS"):
      return ast.literal_eval(node.value)
  raise AssertionError("hamgan/cli/bench.py has no SUBCOMMANDS")


# absl lists `  --name: ...` / `  --[no]name: ...`; argparse `  --name NAME` / `  -h, --help`.
_HELP_FLAG = re.compile(r"^  (?:-\w, )?--(\[no\])?([A-Za-z_][\w-]*)", re.MULTILINE)


def help_flags(text):
  """({flag names}, {boolean flag names}) defined in a tool's --help text."""
  names, booleans = set(), set()
  for negatable, name in _HELP_FLAG.findall(text):
    names.add(name)
    if negatable:
      booleans.add(name)
  return names, booleans


def _tool_commands():
  """{tool: argv of its --help}: each console script, and each hamgan-bench sub-command."""
  tools = {}
  for script in console_scripts():
    tools[script] = [os.path.join(BIN_DIR, script), "--help"]
  for sub in bench_subcommands():
    tools[f"hamgan-bench {sub}"] = [os.path.join(BIN_DIR, "hamgan-bench"), sub, "--help"]
  return tools


@pytest.fixture(scope="module")
def tool_help():
  """{tool: CompletedProcess-like (returncode, stdout, stderr)}, all run in parallel."""
  procs = {}
  for tool, argv in _tool_commands().items():
    if not os.path.exists(argv[0]):
      pytest.fail(f"{argv[0]} is not installed; run `pip install -e .` in the venv "
                  "(make does) so that the console scripts exist.")
    procs[tool] = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
  results = {}
  for tool, proc in procs.items():
    try:
      out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
      proc.kill()
      out, err = proc.communicate()
      pytest.fail(f"{tool} --help did not answer within 180 s; stderr: {err[-2000:]}")
    results[tool] = (proc.returncode, out, err)
  return results


def _tool_module(tool):
  scripts = console_scripts()
  if tool.startswith("hamgan-bench "):
    return bench_subcommands()[tool.split(" ", 1)[1]]
  return scripts[tool].split(":")[0]


@pytest.mark.parametrize("tool", sorted(_tool_commands()))
def test_every_tool_answers_help_with_its_flags(tool_help, tool):
  code, out, err = tool_help[tool]
  assert code == 0, f"{tool} --help exited with {code}; stderr: {err[-2000:]}"
  listed, _ = help_flags(out)
  own = defined_flags(_tool_module(tool))
  assert own <= listed, (f"{tool} --help does not list its flags "
                         f"{sorted(own - listed)}; it printed:\n{out}")
  if tool == "hamgan-bench":
    for sub in bench_subcommands():   # the top level names its sub-commands instead
      assert f"hamgan-bench {sub}" in out


# ------------------------------------------------------------------ examples in the docs

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_OPERATORS = {";", "&&", "||", "|", "&", "(", ")", "do", "then", "else", "{", "}"}


def fenced_blocks(text):
  """[(language, code)] of a Markdown text's fenced blocks."""
  return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def shell_commands(code):
  """[(tool, [args])] of every hamgan-* command in a shell snippet."""
  lines = code.replace("\\\n", " ").splitlines()
  commands = []
  while lines:
    line = lines.pop(0)
    while True:  # a quoted string may go on over the next lines
      lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
      lexer.whitespace_split = True
      lexer.commenters = "#"
      try:
        tokens = list(lexer)
        break
      except ValueError as e:
        if "No closing quotation" not in str(e) or not lines:
          raise AssertionError(f"shell line does not parse ({e}): {line}") from e
        line += "\n" + lines.pop(0)
    current = None
    at_start = True
    for token in tokens:
      if token in _OPERATORS:
        current, at_start = None, True
        continue
      if at_start:
        at_start = False
        word = os.path.basename(token)
        if re.fullmatch(r"hamgan-\w+", word):
          current = (word, [])
          commands.append(current)
        continue
      if current is not None:
        current[1].append(token)
  return commands


def check_command(tool, args, tool_help):
  """Problems with one documented command: flags the tool lacks, gin files missing."""
  if tool == "hamgan-bench" and args and not args[0].startswith("-"):
    tool, args = f"hamgan-bench {args[0]}", args[1:]
  if tool not in tool_help:
    return [f"{tool}: no such tool (console scripts: {sorted(console_scripts())})"]
  names, booleans = help_flags(tool_help[tool][1])
  problems = []
  for arg in args:
    arg = arg.lstrip("[")
    if not arg.startswith("--"):
      continue
    flag, _, value = arg[2:].partition("=")
    flag = flag.rstrip("]")
    known = (flag in names or flag == "help"
             or (flag.startswith("no") and flag[2:] in booleans))
    if not known:
      problems.append(f"{tool}: --{flag} is not a flag of {tool} (it has "
                      f"{', '.join(sorted(names))})")
    placeholder = "$" in value or "..." in value or re.search(r"\b[A-Z]{3,}\b", value)
    if tool == "hamgan-train" and flag == "gin_file" and not placeholder:
      if not (os.path.exists(os.path.join(REPO, value))
              or os.path.exists(os.path.join(REPO, "gin_configs", value + ".gin"))):
        problems.append(f"hamgan-train: --gin_file={value} names no file in the repository")
  return problems


def test_shell_parser_finds_commands_and_bad_flags(tool_help):
  """The example checker itself: it finds a command behind a loop keyword, after a
  line continuation and after a quoted string over two lines, and flags an unknown flag."""
  code = ("for c in a b; do\n  \"$B/hamgan-train\" --gin_file=demo_digits \\\n"
          "    --model_dir=runs/$c --no_such_flag=1  # comment --ignored\ndone\n"
          "X=$(python -c \"import os\nprint(1)\")\n"   # a quote open over two lines
          "hamgan-bench step --batch=8\n")
  commands = shell_commands(code)
  assert commands == [("hamgan-train", ["--gin_file=demo_digits", "--model_dir=runs/$c",
                                        "--no_such_flag=1"]),
                      ("hamgan-bench", ["step", "--batch=8"])]
  problems = check_command(*commands[0], tool_help)
  assert len(problems) == 1 and "--no_such_flag is not a flag of hamgan-train" in problems[0]
  assert check_command(*commands[1], tool_help) == []
  assert check_command("hamgan-bench", ["step", "--bacth=8"], tool_help)


def _doc_examples(path="README.md"):
  with open(os.path.join(REPO, path), encoding="utf-8") as f:
    text = f.read()
  if path.endswith(".sh"):
    return [("sh", text)]
  return fenced_blocks(text)


# Markdown files with command examples, and the shell scripts in docs/ that make results.
def _repo_files(*pattern):
  return sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, *pattern)))


DOCUMENTS = (["README.md", "launch/README.md"] + _repo_files("docs", "*.md")
             + _repo_files("docs", "*", "*.sh"))


@pytest.mark.parametrize("path", DOCUMENTS)
def test_shell_examples_use_real_flags(tool_help, path):
  problems, checked = [], 0
  for language, code in _doc_examples(path):
    if language in ("sh", "bash", "shell"):
      for tool, args in shell_commands(code):
        checked += 1
        problems += check_command(tool, args, tool_help)
  if path == "README.md":
    assert checked >= 5   # README shows train, eval, sample and compare commands
  assert not problems, f"{path} examples:\n  " + "\n  ".join(problems)


def test_readme_python_examples_compile():
  blocks = [code for language, code in _doc_examples() if language == "python"]
  assert blocks
  for i, code in enumerate(blocks):
    compile(code, f"README.md python block {i + 1}", "exec")


def _gin_files():
  folder = os.path.join(REPO, "gin_configs")
  return sorted(f for f in os.listdir(folder) if f.endswith(".gin"))


@pytest.mark.parametrize("name", _gin_files())
def test_gin_config_first_line_runs_it(tool_help, name):
  """Every experiment starts with the command that runs it (README), flags real."""
  with open(os.path.join(REPO, "gin_configs", name), encoding="utf-8") as f:
    first = f.readline().strip()
  if name.startswith("base_"):
    assert not first.startswith("# hamgan-"), f"{name} is included, not run alone"
    return
  assert first.startswith("# hamgan-train "), (
      f"gin_configs/{name} should start with '# hamgan-train --gin_file=gin_configs/{name} "
      f"...', the command that runs it; it starts with {first!r}")
  commands = shell_commands(first[2:])
  assert len(commands) == 1
  tool, args = commands[0]
  assert check_command(tool, args, tool_help) == []
  gin_files = [a.split("=", 1)[1] for a in args if a.startswith("--gin_file=")]
  assert gin_files == [f"gin_configs/{name}"], (name, gin_files)
