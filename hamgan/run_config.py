"""A run's saved gin config (operative_config.gin) read as data, without gin.

hamgan-train saves the operative config next to its checkpoints. Tools that only need
a value from it (the data set a run trained on, its batch, its context modules) read
it here instead of parsing it into gin's global state, which would need every
configurable registered and would change the caller's own configuration. This is the
one text reader of that file in hamgan; rebuilding a model from it goes through gin.

No TensorFlow and no other hamgan module is imported here, so both evaluation and
compare can use it without an import cycle.
"""
import ast
import re

OPERATIVE_CONFIG = "operative_config.gin"

_BINDING = re.compile(r"^\s*([A-Za-z_][\w./]*)\s*=\s*(.*)$")


class Reference(str):
  """A value that is not a Python literal: `@fn`, `@fn()`, or an unbound `%MACRO`."""


def parse_bindings(text):
  """`name.param = value` lines of a gin file as {name: value}.

  Values continue over lines while brackets are open. Literals become Python values;
  references (`@fn`, `%MACRO`) become `Reference` strings, and a `%MACRO` whose macro
  is bound in the same text is replaced by the macro's value. `import` and `include`
  lines are skipped.
  """
  sources = {}
  pending = None
  for raw in text.splitlines():
    line = _strip_comment(raw).rstrip()
    if pending is not None:
      pending[1].append(line.strip())
      joined = " ".join(pending[1])
      if _balanced(joined):
        sources[pending[0]] = joined
        pending = None
      continue
    match = _BINDING.match(line)
    if not match or line.lstrip().startswith(("import ", "include ")):
      continue
    name, value = match.group(1), match.group(2).strip()
    if _balanced(value):
      sources[name] = value
    else:
      pending = (name, [value])
  values = {name: _value(source) for name, source in sources.items()}
  for name, value in values.items():
    if isinstance(value, Reference) and value.startswith("%") and value[1:] in values:
      values[name] = values[value[1:]]
  return values


def lookup(bindings, name):
  """The value bound to `name` (e.g. 'train.batch_size'), or None.

  A binding matches if it is `name`, or `name` behind a module path
  ('hamgan.models.generator.Generator.context') or a scope ('eval/train.dataset').
  Unscoped bindings win over scoped ones (a scope applies only inside it); among
  equals, the first in the file.
  """
  scoped = None
  for bound, value in bindings.items():
    if bound == name or bound.endswith("." + name):
      if "/" not in bound:
        return value
      if scoped is None:
        scoped = value
    elif bound.endswith("/" + name) and scoped is None:
      scoped = value
  return scoped


def _strip_comment(line):
  """The line up to a '#' that is not inside quotes."""
  quote = None
  for i, ch in enumerate(line):
    if quote:
      if ch == quote:
        quote = None
    elif ch in "'\"":
      quote = ch
    elif ch == "#":
      return line[:i]
  return line


def _balanced(source):
  """True when every bracket and quote opened in `source` is closed."""
  depth = 0
  quote = None
  for ch in source:
    if quote:
      if ch == quote:
        quote = None
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
  return depth <= 0 and quote is None


def _value(source):
  try:
    return ast.literal_eval(source)
  except (ValueError, SyntaxError):
    return Reference(source)
