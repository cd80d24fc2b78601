"""The runs table (comparison.md) and the rows behind it (comparison.json)."""
from hamgan.compare import runs as runs_lib

RUN_HEADERS = ("run", "context G", "context D", "batch", "steps (done / planned)", "it/s",
               "G params", "D params")


def _fmt(value, digits=2):
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return str(value)


def _fmt_params(value):
  return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _fmt(value)


def _fmt_steps(report):
  if report.last_step is None and report.num_steps is None:
    return ""
  return f"{_fmt(report.last_step)} / {_fmt(report.num_steps)}"


def _fmt_best(kind, points):
  best = runs_lib.best_point(kind, points)
  return "" if best is None else f"{best[1]:.2f} @ {best[0]}"


def markdown_table(headers, rows):
  def esc(cell):
    return str(cell).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
  lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def run_table_cells(reports, columns):
  """Header and cell strings of the runs table (also what tests read)."""
  headers = list(RUN_HEADERS) + [c.header for c in columns]
  rows = []
  for r in reports:
    cells = [r.name, _fmt(r.g_context), _fmt(r.d_context), _fmt(r.batch_size), _fmt_steps(r),
             _fmt(r.steps_per_sec), _fmt_params(r.g_params), _fmt_params(r.d_params)]
    cells += [_fmt_best(c.kind, r.points(c)) for c in columns]
    rows.append(cells)
  return headers, rows


def run_rows(reports, columns):
  """One dict per run, the data behind both comparison.md and comparison.json."""
  rows = []
  for r in reports:
    row = dict(run=r.name, path=r.path, g_context=r.g_context, d_context=r.d_context,
               batch_size=r.batch_size, num_steps=r.num_steps, last_step=r.last_step,
               steps_per_sec=r.steps_per_sec, generator_params=r.g_params,
               discriminator_params=r.d_params, best={}, curves={}, warnings=r.warnings)
    for col in columns:
      points = r.points(col)
      best = runs_lib.best_point(col.kind, points)
      row["best"][col.key] = (None if best is None else
                              dict(kind=col.kind, metric=col.metric, protocol=col.protocol,
                                   generator=col.generator, variant=col.variant,
                                   step=best[0], value=best[1]))
      if points:
        row["curves"][col.key] = [dict(step=s, value=v) for s, v in points]
    rows.append(row)
  return rows


def render_markdown(reports, columns, paper, plot_name="fid_vs_step.png", sections=()):
  """The text of comparison.md; `paper` is a hamgan.compare.paper.PaperFigures and
  `sections` more markdown lines that follow the runs table (the groups of seeds)."""
  headers, rows = run_table_cells(reports, columns)
  protocols = sorted({c.setting for c in columns})
  out = ["# hamgan comparison", "",
         "## Runs measured here", "",
         "it/s: median of `steps_per_sec` over the rows of train_log.jsonl (one D step and "
         "one G step per iteration). steps: last logged step / configured steps. Best FID "
         "(lowest) and IS (highest) are over all evaluated checkpoints, with their step. "
         "Each results column is one metric under one evaluation protocol; numbers under "
         "different protocols are not comparable and are never put in one column.", "",
         markdown_table(headers, rows), ""]
  if protocols:
    out += ["Evaluation protocols (and generator variants) in this table:", ""]
    out += [f"- `{p}`" for p in protocols]
    out.append("")
  out += list(sections)
  out += ["## Quoted from the paper (not measured here)", "",
          f"{paper.paper}, {paper.quality_source}. Protocol: {paper.protocol}. "
          f"Their speed ({paper.speed_source}): {paper.speed}. These numbers are not "
          "comparable to the rows above unless the protocol is the same.", "",
          markdown_table(("model (paper)", "context G", "context D", "FID (paper protocol)",
                          "source"),
                         [(p["model"], p["g_context"], p["d_context"], f"{p['fid']:.2f}",
                           "quoted: " + p["source"]) for p in paper.rows]), ""]
  out += ["## FID against step", "", f"![FID against step]({plot_name})", ""]
  warnings = [w for r in reports for w in r.warnings]
  if warnings:
    out += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
  return "\n".join(out)
