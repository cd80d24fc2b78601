"""docs/design.md stays true to the repository: its test names exist, its cited sections too."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"


def _headings():
  return {m.group(1).strip() for m in re.finditer(r"^#{2,3} (.+)$", DESIGN.read_text(), re.M)}


def test_every_named_test_exists():
  named = set(re.findall(r"`(test_\w+\.py)::(test_\w+)`", DESIGN.read_text()))
  assert len(named) > 50
  missing = []
  for file, test in sorted(named):
    tree = ast.parse((ROOT / "tests" / file).read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    if test not in defined:
      missing.append(f"{file}::{test}")
  assert not missing, f"docs/design.md names tests that do not exist: {missing}"


def test_every_cited_section_is_a_heading():
  headings = _headings()
  cited = set()
  for path in [*ROOT.glob("hamgan/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("docs/*.md"),
               *ROOT.glob("gin_configs/*.gin"), *ROOT.glob("launch/*.md")]:
    text = re.sub(r"\s*\n\s*#?\s*", " ", path.read_text())  # join wrapped lines
    for match in re.finditer(r"design\.md,? (?:section )?\(?'([^']+)'", text):
      cited.add((match.group(1), path.name))
  assert len(cited) > 10
  unknown = sorted(c for c in cited if c[0] not in headings)
  assert not unknown, f"citations of docs/design.md sections that do not exist: {unknown}"
