"""One plot per pooled metric: the metric against step, per group a mean line and the
band between the lowest and the highest run at each step (hamgan.compare.seeds)."""
import io
import re

from hamgan import files
from hamgan.compare import seeds as seeds_lib


def plot_name(index, key):
  """A file name for metric `key`: seeds_<index>_<its name, filesystem-safe>.png."""
  metric = key.split(" [", 1)[0]
  slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", metric).strip("_")[:60] or "metric"
  return f"seeds_{index:02d}_{slug}.png"


def plot_bands(groups, key, path, size=(8.0, 5.0), dpi=100):
  """Writes the PNG of `key` against step for every group that has it; False if none."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=size, dpi=dpi)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  drawn = 0
  way = None
  for i, group in enumerate(groups):
    curve = seeds_lib.step_curve(group, key)
    if not curve:
      continue
    way = way or next(s[key][0] for s in group.series if key in s)
    steps, means, lows, highs, _ = zip(*curve)
    color = colors[i % len(colors)]
    ax.plot(steps, means, color=color, marker="o", markersize=3,
            label=f"{group.name} (mean of {group.n})")
    ax.fill_between(steps, lows, highs, color=color, alpha=0.2, linewidth=0)
    drawn += 1
  if not drawn:
    plt.close(fig)
    return False
  better = {"lower": "lower is better", "higher": "higher is better"}.get(way, "")
  ax.set_xlabel("training step")
  ax.set_ylabel(f"{key.split(' [', 1)[0]} ({better})")
  ax.set_title("mean over seeds (line) and min-max over seeds (band)", fontsize=10)
  ax.text(0.0, -0.14, key, transform=ax.transAxes, fontsize=6, va="top")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  plt.close(fig)
  files.write_bytes(path, buf.getvalue())
  return True
