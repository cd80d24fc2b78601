"""The EMA generator: which of G's variables it averages, and its cross-replica update.

The EMA generator is a second copy of G whose trainable weights follow G's as an
exponential moving average from `train.ema_start_step` on (a plain copy before);
its state (spectral-norm vectors, batch-norm statistics) is copied, not averaged.
"""
import tensorflow as tf


def pair_variables(generator, ema_generator):
  """(ema_var, g_var, averaged) for every weight of G, matched by position and shape."""
  g_vars, e_vars = generator.variables, ema_generator.variables
  trainable = {id(v) for v in generator.trainable_variables}
  if len(g_vars) != len(e_vars):
    raise ValueError(f"the EMA generator has {len(e_vars)} variables, G has "
                     f"{len(g_vars)}; generator_fn must build the same model each call.")
  pairs = []
  for e, g in zip(e_vars, g_vars):
    if e.shape != g.shape:
      raise ValueError(f"EMA variable {e.name} {e.shape} does not match G's {g.name} "
                       f"{g.shape}; generator_fn must build the same model each call.")
    pairs.append((e, g, id(g) in trainable))
  return pairs


def update(strategy, pairs, step, start_step, decay):
  """The EMA step, for `merge_call`: the same assignment on every replica's copy."""
  decay = tf.where(step >= start_step, decay, 0.0)
  for e, g, averaged in pairs:
    if averaged:
      fn = lambda ev, gv: ev.assign(gv + decay * (ev - gv))  # noqa: E731
    else:
      fn = lambda ev, gv: ev.assign(gv)  # noqa: E731
    strategy.extended.update(e, fn, args=(g,), group=False)
