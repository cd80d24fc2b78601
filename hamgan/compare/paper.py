"""The paper's figures that comparison.md quotes, read from paper_figures.json.

The numbers live in a data file beside this module, each row with its source, so that
a figure can be checked against the paper and changed without touching code.
"""
import dataclasses
import json
import os

FIGURES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_figures.json")


@dataclasses.dataclass(frozen=True)
class PaperFigures:
  """The quoted quality rows, their protocol, the quoted speeds and the sources."""
  paper: str
  quality_source: str
  protocol: str
  rows: tuple          # dicts: model, g_context, d_context, fid, source
  speed_source: str
  speed: str


def load(path=FIGURES_FILE):
  """PaperFigures from `path`; a missing field raises ValueError naming it."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  try:
    quality, speed = data["quality"], data["speed"]
    rows = tuple(dict(r) for r in quality["rows"])
    for row in rows:
      for field in ("model", "g_context", "d_context", "fid", "source"):
        if field not in row:
          raise KeyError(f"quality.rows[].{field}")
    return PaperFigures(paper=data["paper"], quality_source=quality["source"],
                        protocol=quality["protocol"], rows=rows,
                        speed_source=speed["source"], speed=speed["text"])
  except KeyError as e:
    raise ValueError(f"{path}: missing field {e}; expected the layout of the "
                     "paper_figures.json shipped with hamgan.") from e
