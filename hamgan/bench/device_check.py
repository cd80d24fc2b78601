"""hamgan-bench device-check: one Markdown report of absolute figures for this machine.

    make device-check                       # the full check on a GPU, tiny on a CPU
    hamgan-bench device-check --mode=tiny --out=runs/device_check.md

Three sections, each with absolute numbers (this report is about one machine, so its
times are the result, not ratios):

  1. modules: `hamgan-bench modules` for none / SAGAN / YLG / Hamburger-NMF at the
     paper's 1x128x128x512 and the generator's 16x32x32x256 (train and inference ms,
     peak MB: the device allocator's peak on a GPU, resident-set growth on a CPU);
  2. train step: it/s of the 128x128 SAGAN-layout G/D (ch 64, batch 64) through the real
     trainer, for each context, in float32 and mixed_bfloat16;
  3. evaluation: images/s of G + an Inception-v3-sized classifier at 128x128 through
     the evaluator's streaming path (`tf.keras.applications.InceptionV3(weights=None)`,
     the same cost as the real module, which cannot be fetched offline).

`--mode=full` is sized to finish in about 8 minutes on one GPU; `--mode=tiny` (the
default without a GPU) runs the same code at toy sizes in well under 3 minutes on a
CPU, so CI checks that the command and its report work.
"""
import argparse
import os
import platform
import time

import numpy as np

CONTEXTS = ("none", "sagan", "ylg", "ham_nmf")
PRECISIONS = ("float32", "mixed_bfloat16")
# Everything a mode decides: module shapes (batch, h, w, c, rank), the step's model and
# timing, and the evaluation's size.
MODES = {
    "full": dict(shapes={"paper": (1, 128, 128, 512, 64), "g32": (16, 32, 32, 256, 32)},
                 module_reps=5, module_timeout=300,
                 step=dict(image_size=128, ch=64, batch=64, loops=5, rounds=3,
                           runs=[(c, p) for c in CONTEXTS for p in PRECISIONS]),
                 eval=dict(image_size=128, ch=64, num_samples=2000, batch=100,
                           classifier_size=299)),
    # One module shape, and bfloat16 (emulated, slow on most CPUs) for one context only.
    "tiny": dict(shapes={"paper": (1, 16, 16, 64, 8)},
                 module_reps=1, module_timeout=90,
                 step=dict(image_size=32, ch=16, batch=2, loops=1, rounds=1,
                           runs=[(c, "float32") for c in CONTEXTS]
                           + [("ham_nmf", "mixed_bfloat16")]),
                 eval=dict(image_size=32, ch=8, num_samples=32, batch=16,
                           classifier_size=75)),
}
SECTIONS = ("modules", "step", "eval")


def _device_line():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  gpus = tf.config.list_physical_devices("GPU")
  names = []
  for g in gpus:
    details = tf.config.experimental.get_device_details(g)
    names.append(details.get("device_name", g.name))
  return (f"{', '.join(names) if names else 'CPU only'}; TensorFlow {tf.__version__}; "
          f"{os.cpu_count()} CPU cores; {platform.platform()}")


def module_section(mode):
  """Markdown: one modules table per shape (each module in its own process)."""
  from hamgan.bench import modules  # pylint: disable=import-outside-toplevel
  cfg, out = MODES[mode], []
  for name, shape in cfg["shapes"].items():
    rows = []
    for module in CONTEXTS:
      spec = dict(shape=list(shape), shape_name=name, module=module, steps=6,
                  reps=cfg["module_reps"], min_seconds=0.0, references=[])
      print(f"  modules: {module} at {'x'.join(map(str, shape[:4]))}", flush=True)
      rows.append(modules._measure(spec, cfg["module_timeout"]))  # pylint: disable=protected-access
    out.append(f"#### {'x'.join(map(str, shape[:4]))} (rank {shape[4]})\n\n"
               + modules.format_table(rows))
  return "\n\n".join(out)


def step_section(mode):
  """Markdown: train-step it/s per context and precision, through the real trainer."""
  from hamgan.bench import step as step_lib  # pylint: disable=import-outside-toplevel
  s = MODES[mode]["step"]
  lines = [f"{s['image_size']}x{s['image_size']} SAGAN-layout G/D, ch={s['ch']}, batch "
           f"{s['batch']} (one D step + one G step per iteration, a batch held in memory)",
           "", "| context | " + " | ".join(f"{p} it/s" for p in PRECISIONS) + " |",
           "|---|" + "---|" * len(PRECISIONS)]
  for context in CONTEXTS:
    cells = []
    for precision in PRECISIONS:
      if (context, precision) not in s["runs"]:
        cells.append("not run in this mode")
        continue
      print(f"  step: {context} {precision}", flush=True)
      try:
        trainer = step_lib._trainer(  # pylint: disable=protected-access
            s["image_size"], context, s["batch"], s["ch"], s["loops"], "memory",
            precision=precision)
        secs = step_lib._time_round_robin(  # pylint: disable=protected-access
            {(s["image_size"], context): trainer}, s["loops"], s["rounds"])
        cells.append(f"{1 / secs[(s['image_size'], context)]:.2f}")
      except Exception as e:  # pylint: disable=broad-except  # one failure: one cell
        cells.append(f"error: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
    lines.append(f"| {context} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _inception_classifier(size):
  """InceptionV3(weights=None) with Inception's outputs (pool_3 2048, logits 1008)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from hamgan.evaluation import classifier as classifier_lib  # pylint: disable=import-outside-toplevel
  base = tf.keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                           input_shape=(size, size, 3))
  head = tf.keras.layers.Dense(1008)

  def fn(images):
    pool = base(images, training=False)
    return {"pool_3": pool, "logits": head(pool)}

  return classifier_lib.Classifier(fn, size, f"inception_v3_weights_none_{size}px",
                                   "tf.keras.applications.InceptionV3(weights=None)")


def eval_section(mode):
  """Markdown: images/s of G + the Inception-sized classifier, evaluator path."""
  from hamgan.evaluation import features  # pylint: disable=import-outside-toplevel
  from hamgan.evaluation import restore  # pylint: disable=import-outside-toplevel
  from hamgan.models import Generator  # pylint: disable=import-outside-toplevel
  e = MODES[mode]["eval"]
  generator = Generator(image_size=e["image_size"], num_classes=10, ch=e["ch"], z_dim=128,
                        context="ham_nmf")
  restore.build_generator(generator)
  clf = _inception_classifier(e["classifier_size"])

  def once(n):
    start = time.perf_counter()
    features.generated_features(generator, clf, n, 10, 128, batch_size=e["batch"],
                                progress_every_s=1e9, write=lambda _: None)
    return time.perf_counter() - start

  once(e["batch"])  # trace G and the classifier
  seconds = once(e["num_samples"])
  return "\n".join([
      f"{e['num_samples']} samples, batch {e['batch']}: G {e['image_size']}px (ch={e['ch']}, "
      f"ham_nmf) + InceptionV3(weights=None) at {e['classifier_size']}px, through "
      "hamgan.evaluation.features.generated_features", "",
      "| images | seconds | images/s |", "|---|---|---|",
      f"| {e['num_samples']} | {seconds:.2f} | {e['num_samples'] / seconds:.1f} |"])


def run(mode, sections=SECTIONS):
  """Returns the whole Markdown report."""
  start = time.time()
  parts = [f"## hamgan device check ({mode} mode)", "",
           f"Machine: {_device_line()}.", ""]
  for name, fn in (("modules", module_section), ("step", step_section),
                   ("eval", eval_section)):
    if name not in sections:
      continue
    print(f"[{name}] ...", flush=True)
    t0 = time.time()
    body = fn(mode)
    parts += [f"### {name} ({time.time() - t0:.0f} s)", "", body, ""]
  parts.append(f"Total {time.time() - start:.0f} s.")
  return "\n".join(parts) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="hamgan-bench device-check",
      description="One Markdown report of absolute figures on this machine: context "
                  "modules, the 128x128 train step per context and precision, and "
                  "evaluation images/s with an Inception-v3-sized classifier.")
  parser.add_argument("--mode", choices=("auto", "full", "tiny"), default="auto",
                      help="full: the GPU sizes (about 8 min on one GPU); tiny: toy sizes "
                           "(under 3 min on a CPU); auto: full when a GPU is visible")
  parser.add_argument("--sections", default=",".join(SECTIONS),
                      help=f"comma-separated subset of {','.join(SECTIONS)}")
  parser.add_argument("--out", default="runs/device_check.md",
                      help="the Markdown report file")
  args = parser.parse_args(argv)
  sections = [s for s in args.sections.split(",") if s]
  unknown = sorted(set(sections) - set(SECTIONS))
  if unknown:
    parser.error(f"--sections: unknown {', '.join(unknown)}; expected some of "
                 f"{', '.join(SECTIONS)}.")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  mode = args.mode
  if mode == "auto":
    mode = "full" if tf.config.list_physical_devices("GPU") else "tiny"
  report = run(mode, sections)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      f.write(report)
  print(report)
  print(f"report written to {args.out}" if args.out else "")
  return report


if __name__ == "__main__":
  main()
