"""Argument checks shared by the layers, the models and the trainer.

One integer validator, so that every constructor rejects a bad count (a float, a
bool, a negative number, a string from a gin typo) the same way, before any weight
or step exists, with a message that names the value and the fix.
"""
import numbers


def check_int(owner, name, value, minimum=1, allow_none=False, hint=""):
  """Returns `value` as a Python int, or raises a ValueError naming it.

  Accepts Python and NumPy integers (not bools) >= `minimum`; None only with
  `allow_none` (then returns None). `owner` ("Hamburger", "Generator", ...) and
  `name` say which argument it is; `hint` says what to pass instead.
  """
  if allow_none and value is None:
    return None
  ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
  if not ok or value < minimum:
    if minimum == 0:
      kind = "a non-negative integer"
    elif minimum == 1:
      kind = "a positive integer"
    else:
      kind = f"an integer >= {minimum}"
    extra = " or None" if allow_none else ""
    raise ValueError(f"{owner}: {name}={value!r} is not {kind}{extra}; "
                     f"{hint or 'pass a plain integer.'}")
  return int(value)


def choose_function(kind, known, name_or_fn, contract, gin_example):
  """A function given as a callable (a gin reference) or by a name in `known`.

  `kind` ("loss", "optimizer") and `contract` (the signature a callable needs) go
  into the error, with `gin_example`, the binding that picks one in gin.
  """
  if callable(name_or_fn):
    return name_or_fn
  if name_or_fn in known:
    return known[name_or_fn]
  raise ValueError(f"{kind} {name_or_fn!r} is not known: expected one of {sorted(known)} "
                   f"or a callable {contract}; in gin write `{gin_example}`.")
