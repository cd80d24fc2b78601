"""fid_vs_step.png: FID against step, one colour per run, one line style per protocol."""
import io

from hamgan import files


def plot_fid(reports, columns, path, size=(8.0, 5.0), dpi=100):
  """Writes a PNG of FID against step: one line per run and FID column."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fid_cols = [c for c in columns if c.kind == "FID"]
  styles = ("-", "--", ":", "-.")
  protocol_style = {p: styles[i % len(styles)]
                    for i, p in enumerate(sorted({c.setting for c in fid_cols}))}
  fig, ax = plt.subplots(figsize=size, dpi=dpi)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  drawn = 0
  for i, r in enumerate(reports):
    for col in fid_cols:
      points = r.points(col)
      if not points:
        continue
      steps, values = zip(*points)
      ax.plot(steps, values, linestyle=protocol_style[col.setting], marker="o", markersize=3,
              color=colors[i % len(colors)], label=f"{r.name}: {col.metric} [{col.setting}]")
      drawn += 1
  ax.set_xlabel("training step")
  ax.set_ylabel("FID (lower is better)")
  ax.set_title("FID against step (colour: run; line style: protocol and generator)")
  ax.grid(True, alpha=0.3)
  if drawn:
    ax.legend(fontsize=7, loc="best")
  else:
    ax.text(0.5, 0.5, "no FID results in these runs", ha="center", va="center",
            transform=ax.transAxes)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  plt.close(fig)
  files.write_bytes(path, buf.getvalue())
