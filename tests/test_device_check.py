"""hamgan-bench device-check: the report's format, and the tiny CPU mode end to end."""
import re

import pytest

from hamgan.bench import device_check


def test_report_has_every_section_in_order_and_is_written(monkeypatch, tmp_path):
  for name in device_check.SECTIONS:
    monkeypatch.setattr(device_check, f"{name if name != 'modules' else 'module'}_section",
                        lambda mode, name=name: f"| {name} | 1.0 |")
  out = tmp_path / "report.md"
  report = device_check.main(["--mode=tiny", f"--out={out}"])
  assert out.read_text() == report
  assert report.startswith("## hamgan device check (tiny mode)\n")
  assert re.search(r"^Machine: .*TensorFlow 2\.\d+.*CPU cores", report, re.M)
  heads = re.findall(r"^### (\w+) \(\d+ s\)$", report, re.M)
  assert heads == list(device_check.SECTIONS)
  for name in device_check.SECTIONS:
    assert f"| {name} | 1.0 |" in report
  assert re.search(r"^Total \d+ s\.$", report, re.M)
  only = device_check.main(["--mode=tiny", "--sections=eval", "--out="])
  assert re.findall(r"^### (\w+)", only, re.M) == ["eval"]


def test_bad_sections_are_refused_before_any_work(capsys):
  with pytest.raises(SystemExit) as exit_info:
    device_check.main(["--sections=modules,speed"])
  assert exit_info.value.code == 2
  assert "unknown speed" in capsys.readouterr().err


def test_full_mode_is_the_issue_sizes():
  full = device_check.MODES["full"]
  assert full["shapes"]["paper"][:4] == (1, 128, 128, 512)
  assert full["shapes"]["g32"][:4] == (16, 32, 32, 256)
  assert (full["step"]["image_size"], full["step"]["ch"], full["step"]["batch"]) == (128, 64, 64)
  assert len(full["step"]["runs"]) == 8  # four contexts x float32 / mixed_bfloat16
  assert full["eval"]["image_size"] == 128 and full["eval"]["classifier_size"] == 299


@pytest.mark.slow
def test_tiny_mode_runs_every_section_with_numbers(tmp_path):
  report = device_check.main(["--mode=tiny", f"--out={tmp_path / 'r.md'}"])
  # modules: a row per context with a train time in ms
  for context in device_check.CONTEXTS:
    assert re.search(rf"^\| {context} \| 6 \| [\d,]+ \| [\d.]+ \| [\d.]+ \|", report, re.M), context
  # step: float32 it/s for every context, bfloat16 for ham_nmf
  for context in device_check.CONTEXTS:
    assert re.search(rf"^\| {context} \| \d+\.\d\d \|", report, re.M), context
  assert re.search(r"^\| ham_nmf \| \d+\.\d\d \| \d+\.\d\d \|$", report, re.M)
  # eval: images per second
  assert re.search(r"^\| 32 \| [\d.]+ \| [\d.]+ \|$", report, re.M)
  assert "error" not in report
