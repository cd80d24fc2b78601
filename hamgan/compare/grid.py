"""The grid of a sweep: --vary axes times --seeds, and each point's run directory name.

--vary syntax (one flag is one axis of the grid; several flags give every combination):

  BINDING=V1,V2,...              one binding takes each value in turn
  B1,B2=V1,V2,...                several bindings take the same value together
                                 (Generator.context,Discriminator.context=none,sagan)
  B1=V1,V2;B2=W1,W2              bindings that move together value by value (zipped):
                                 B1=V1 with B2=W1, then B1=V2 with B2=W2

Values are gin literals ('sagan', 1e-4, None, {'rank': 8}, (1, 2)) or gin references
(@ham_nmf, %MACRO); a bare word such as `sagan` is read as the string 'sagan' (so `none`
is the string 'none' and `None` is Python's None). Commas and semicolons inside quotes or
brackets belong to the value.

Run directory names are flat and filesystem-safe:
  ROOT/<axis>-<value>__<axis>-<value>__seed-<seed>   e.g. ROOT/context-sagan__seed-0
<axis> is the last part of the axis' first binding (`context` for Generator.context), or
the whole binding when two axes would share that; <value> is the value of the axis'
first binding (all of them, joined by `_`, when that alone does not tell the points
apart), with every character but letters, digits, `.`, `+` and `-` made `_`. The points
are ordered seed by seed: every setting with the first seed, then with the next, so that
a sweep stopped half-way has compared settings on the same seeds.
"""
import ast
import dataclasses
import hashlib
import itertools
import re

SEED_BINDING = "train.seed"
_BINDING = re.compile(r"[A-Za-z_][\w./]*\Z")
_BARE_WORD = re.compile(r"[A-Za-z_][\w.\-]*\Z")
_UNSAFE = re.compile(r"[^A-Za-z0-9.+\-]+")
_MAX_LABEL = 60
_OPEN, _CLOSE = "([{", ")]}"
VARY_HELP = "--vary=BINDING=V1,V2 | B1,B2=V1,V2 | B1=V1,V2;B2=W1,W2"


@dataclasses.dataclass(frozen=True)
class Value:
  text: str    # what follows `binding =` in a gin binding
  label: str   # its filesystem-safe form in a run directory name


@dataclasses.dataclass(frozen=True)
class Axis:
  """One --vary flag: segments of (bindings, values), all segments equally long."""
  spec: str
  segments: tuple

  @property
  def bindings(self):
    return tuple(b for bindings, _ in self.segments for b in bindings)

  def __len__(self):
    return len(self.segments[0][1])


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of the sweep: its directory name, its varied bindings and its seed."""
  name: str
  settings: tuple   # ((binding, gin text), ...)
  seed: int

  def gin_params(self):
    return [f"{b} = {v}" for b, v in self.settings] + [f"{SEED_BINDING} = {self.seed}"]


def split_top(text, sep, what):
  """`text` split at `sep` outside quotes and brackets; ValueError when unbalanced."""
  parts, depth, quote, start = [], 0, None, 0
  for i, ch in enumerate(text):
    if quote:
      quote = None if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in _OPEN:
      depth += 1
    elif ch in _CLOSE:
      depth -= 1
    elif ch == sep and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  if quote or depth:
    raise ValueError(f"{what}: an unclosed {'quote' if quote else 'bracket'} in {text!r}; "
                     "close it (values are gin literals, e.g. {'rank': 8}).")
  return parts + [text[start:]]


def sanitize(text):
  """`text` with every run of characters but [A-Za-z0-9.+-] made one `_`."""
  safe = _UNSAFE.sub("_", text).strip("_") or "empty"
  if len(safe) > _MAX_LABEL:   # long values keep a hash, so that names stay apart
    safe = safe[:_MAX_LABEL - 9] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
  return safe


def parse_value(text, binding):
  """A Value from one --vary value: a gin literal, a reference or a bare word."""
  text = text.strip()
  if not text:
    raise ValueError(f"--vary {binding}: an empty value (two commas in a row, or one at "
                     "the end); remove it, or write '' for the empty string.")
  if text[0] in "@%":
    if not _BINDING.fullmatch(text[1:].removesuffix("()")):
      raise ValueError(f"--vary {binding}: {text!r} is no gin reference; write @name or "
                       "%MACRO.")
    return Value(text, sanitize(text[1:].removesuffix("()")))
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if not _BARE_WORD.fullmatch(text):
      raise ValueError(
          f"--vary {binding}: {text!r} is not a gin literal; quote strings ('{text}'), "
          "write numbers, None, True/False, lists, tuples or dicts as in Python, or "
          "references as @name.") from None
    value = text
  return Value(repr(value), sanitize(value if isinstance(value, str) else repr(value)))


def _parse_segment(segment, spec):
  names, sep, values = segment.partition("=")
  bindings = tuple(b.strip() for b in names.split(","))
  if not sep or not all(_BINDING.fullmatch(b) for b in bindings):
    raise ValueError(f"--vary={spec!r}: expected BINDING=V1,V2,... with BINDING like "
                     f"Generator.context ({VARY_HELP}).")
  return bindings, tuple(parse_value(v, ",".join(bindings))
                         for v in split_top(values, ",", f"--vary={spec!r}"))


def parse_vary(spec):
  """An Axis from one --vary flag; ValueError naming the flag and the fix."""
  segments = tuple(_parse_segment(s.strip(), spec)
                   for s in split_top(spec, ";", f"--vary={spec!r}"))
  lengths = {len(values) for _, values in segments}
  if len(lengths) > 1:
    raise ValueError(f"--vary={spec!r}: bindings joined by ';' move together, so they need "
                     f"as many values each (got {sorted(lengths)}); give each the same count.")
  points = [tuple(values[i].text for _, values in segments) for i in range(lengths.pop())]
  repeated = sorted({" ; ".join(p) for p in points if points.count(p) > 1})
  if repeated:
    raise ValueError(f"--vary={spec!r}: {', '.join(repeated)} given twice; list each "
                     "value once.")
  bindings = [b for names, _ in segments for b in names]
  if SEED_BINDING in bindings or any(b.endswith("." + SEED_BINDING) for b in bindings):
    raise ValueError(f"--vary={spec!r}: the seed is set by --seeds=0,1,2, not by --vary.")
  return Axis(spec, segments)


def parse_seeds(text):
  """[int] from '0,1,2'; ValueError when empty, not integers, or repeated."""
  parts = [p.strip() for p in (text or "").split(",") if p.strip()]
  if not parts:
    raise ValueError(f"--seeds={text!r} gives no seed; pass e.g. --seeds=0,1,2 (each run "
                     f"binds {SEED_BINDING}).")
  try:
    seeds = [int(p) for p in parts]
  except ValueError:
    raise ValueError(f"--seeds={text!r}: seeds are integers separated by commas, e.g. "
                     "--seeds=0,1,2.") from None
  if len(set(seeds)) < len(seeds) or min(seeds) < 0:
    raise ValueError(f"--seeds={text!r}: each seed once and none negative, e.g. 0,1,2.")
  return seeds


def check_axes(axes, fixed_params):
  """Refuses a binding varied twice, or both varied and fixed by --gin_param."""
  seen = {}
  for axis in axes:
    for binding in axis.bindings:
      if binding in seen:
        raise ValueError(f"{binding} is varied by both --vary={seen[binding]!r} and "
                         f"--vary={axis.spec!r}; vary it in one of them.")
      seen[binding] = axis.spec
  for param in fixed_params:
    bound = param.partition("=")[0].strip()
    if bound in seen:
      raise ValueError(f"--gin_param={param!r} fixes {bound}, which --vary={seen[bound]!r} "
                       "varies; drop one of them.")
    if bound == SEED_BINDING:
      raise ValueError(f"--gin_param={param!r}: the seed is set by --seeds, not by "
                       "--gin_param.")


def _axis_names(axes):
  short = [a.segments[0][0][0].split("/")[-1].split(".")[-1] for a in axes]
  return [sanitize(s if short.count(s) == 1 else a.segments[0][0][0])
          for s, a in zip(short, axes)]


def _axis_labels(axis):
  first = [v.label for v in axis.segments[0][1]]
  if len(set(first)) == len(first):
    return first
  joined = ["_".join(values[i].label for _, values in axis.segments)
            for i in range(len(axis))]
  if len(set(joined)) < len(joined):
    raise ValueError(f"--vary={axis.spec!r}: values that differ only in characters a "
                     f"directory name cannot hold give the same name ({joined}); make "
                     "them differ in letters or digits.")
  return joined


def make_points(axes, seeds):
  """Every Point of the grid, seed by seed, in the order of the --vary flags."""
  names, labels = _axis_names(axes), [_axis_labels(a) for a in axes]
  points = []
  for seed in seeds:
    for combo in itertools.product(*(range(len(a)) for a in axes)):
      parts = [f"{n}-{labels[k][i]}" for k, (n, i) in enumerate(zip(names, combo))]
      settings = tuple((b, values[i].text) for axis, i in zip(axes, combo)
                       for bindings, values in axis.segments for b in bindings)
      points.append(Point("__".join(parts + [f"seed-{seed}"]), settings, seed))
  return points
