"""hamgan-compare: table cells, per-protocol columns, JSON rows, the plot, and errors."""
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from matplotlib import colors as mcolors
from matplotlib import image as mimage

from hamgan import reporting

# Rows as hamgan.evaluation.evaluator writes them: protocol labels, metric names that
# carry the protocol, and the generator variant evaluated.
PROTO_A = "50k/imagenet2012-validation"
PROTO_B = "5k/imagenet2012-train, classifier digits.keras"
FID_A = "fid50k/imagenet2012-validation"
FID_B = "fid5k/imagenet2012-train"
EMA, RAW = "ema_generator", "generator"


def _write_jsonl(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")


def _write_run(root, name, g_ctx, d_ctx, batch, steps, speeds, evals, summary=None):
  run = os.path.join(root, name)
  os.makedirs(run)
  with open(os.path.join(run, "operative_config.gin"), "w") as f:
    f.write("# Parameters for Generator:\n"
            f"hamgan.models.generator.Generator.context = '{g_ctx}'\n"
            "Generator.context_settings = {\n    'rank': 32,\n    'steps': 6}  # multi-line\n"
            f"Discriminator.context = '{d_ctx}'\n"
            "train.batch_size = %BATCH\n"
            f"BATCH = {batch}\n"
            f"train.num_steps = {steps}\n"
            "train.loss_fn = @hinge\n")
  _write_jsonl(os.path.join(run, "train_log.jsonl"),
               [dict(step=100 * (i + 1), d_loss=1.0, g_loss=0.5, steps_per_sec=s,
                     images_per_sec=s * batch, wall_time=1000.0 + i)
                for i, s in enumerate(speeds)])
  if evals is not None:
    _write_jsonl(os.path.join(run, "eval", "results.jsonl"), evals)
  if summary is not None:
    with open(os.path.join(run, "model_summary.json"), "w") as f:
      json.dump(summary, f)
  return run


def _eval_row(step, protocol, metrics, generator=EMA):
  return dict(step=step, checkpoint=f"ckpt-{step}", generator=generator, metrics=metrics,
              protocol=protocol, num_samples=50000, classifier="inception",
              wall_time=float(step), config_sha256="0" * 64)


@pytest.fixture
def three_runs(tmp_path):
  """sagan (protocol A), ham (A and B), none (no eval file, no summary)."""
  root = str(tmp_path / "runs")
  sagan = _write_run(
      root, "sagan_run", "sagan", "sagan", 256, 1000,
      # Median 1.6 (the mean, 2.86, would differ): a warm-up outlier must not count.
      speeds=[0.5, 1.5, 1.6, 1.7, 9.0],
      evals=[_eval_row(100, PROTO_A, {FID_A: 40.0, "is50k": 5.0, "is50k_10split_mean": 9.0,
                                      "is50k_10split_std": 0.1}),
             _eval_row(200, PROTO_A, {FID_A: 30.0, "is50k": 6.0}),
             _eval_row(300, PROTO_A, {FID_A: 32.5, "is50k": 8.25})],
      summary={"generator_params": 1234567, "discriminator_params": 7654321})
  ham = _write_run(
      root, "ham_run", "ham_nmf", "ham_nmf", 128, 2000,
      speeds=[2.0, 2.5, 3.0, 3.5],   # median of an even count: 2.75
      evals=[_eval_row(100, PROTO_A, {FID_A: 35.0, "is50k": 6.5}),
             _eval_row(200, PROTO_A, {FID_A: 28.125, "is50k": 7.0}),
             # The raw (non-EMA) generator: its own columns, never mixed with the EMA's.
             _eval_row(100, PROTO_A, {FID_A: 20.0, "is50k": 9.5}, generator=RAW),
             _eval_row(100, PROTO_B, {FID_B: 12.0, "is5k": 3.0}),
             # Same best value at two steps: the earliest step is reported.
             _eval_row(200, PROTO_B, {FID_B: 11.0, "is5k": 3.5}),
             _eval_row(300, PROTO_B, {FID_B: 11.0, "is5k": 3.25})],
      summary={"generator_params": 1000, "discriminator_params": 2000})
  none = _write_run(root, "none_run", "none", "none", 64, 500, speeds=[4.0], evals=None)
  return [sagan, ham, none]


def _runs_table(md):
  """Header list and {run name: {header: cell}} of the first table in comparison.md."""
  lines = md.split("## Runs measured here", 1)[1].splitlines()
  first = next(i for i, l in enumerate(lines) if l.startswith("|"))
  table = []
  for line in lines[first:]:
    if not line.startswith("|"):
      break
    table.append(line)

  def cells(line):
    return [c.strip() for c in line.strip().strip("|").split(" | ")]
  headers = cells(table[0])
  rows = {}
  for line in table[2:]:
    c = cells(line)
    assert len(c) == len(headers), line
    rows[c[0]] = dict(zip(headers, c))
  return headers, rows


def _header(headers, kind, metric, protocol, generator=EMA):
  matches = [h for h in headers if h.startswith(f"best {kind}: {metric} ")
             and h.endswith(f"protocol: {protocol}; generator: {generator}")]
  assert len(matches) == 1, (kind, metric, protocol, headers)
  return matches[0]


def test_table_cells_per_protocol(three_runs, tmp_path, caplog):
  out = str(tmp_path / "cmp")
  with caplog.at_level(logging.WARNING, logger="hamgan.reporting"):
    reporting.write_comparison(three_runs, out)
  md = open(os.path.join(out, "comparison.md")).read()
  headers, rows = _runs_table(md)
  assert list(rows) == ["sagan_run", "ham_run", "none_run"]

  s, h, n = rows["sagan_run"], rows["ham_run"], rows["none_run"]
  assert (s["context G"], s["context D"], s["batch"]) == ("sagan", "sagan", "256")
  assert (h["context G"], h["context D"], h["batch"]) == ("ham_nmf", "ham_nmf", "128")
  assert s["steps (done / planned)"] == "500 / 1000"
  assert s["it/s"] == "1.60" and h["it/s"] == "2.75" and n["it/s"] == "4.00"
  assert s["G params"] == "1,234,567" and s["D params"] == "7,654,321"

  fid_a = _header(headers, "FID", FID_A, PROTO_A)
  is_a = _header(headers, "IS", "is50k", PROTO_A)
  fid_b = _header(headers, "FID", FID_B, PROTO_B)
  is_b = _header(headers, "IS", "is5k", PROTO_B)
  fid_raw = _header(headers, "FID", FID_A, PROTO_A, RAW)
  is_raw = _header(headers, "IS", "is50k", PROTO_A, RAW)
  # Exactly six results columns: FID and IS per (protocol, generator); the 10-split
  # IS is not a column.
  assert len(headers) == len(reporting._RUN_HEADERS) + 6
  assert not any("split" in x for x in headers)
  # No column mixes the protocols.
  for col in (fid_a, is_a):
    assert PROTO_B not in col
  for col in (fid_b, is_b):
    assert PROTO_A not in col

  assert s[fid_a] == "30.00 @ 200" and s[is_a] == "8.25 @ 300"
  assert s[fid_b] == "" and s[is_b] == ""
  assert h[fid_a] == "28.12 @ 200" and h[is_a] == "7.00 @ 200"
  assert h[fid_b] == "11.00 @ 200" and h[is_b] == "3.50 @ 200"
  assert h[fid_raw] == "20.00 @ 100" and h[is_raw] == "9.50 @ 100"
  assert s[fid_raw] == "" and s[is_raw] == ""
  # The run without an eval file is listed, blank where there is nothing.
  assert n[fid_a] == n[is_a] == n[fid_b] == n[is_b] == ""
  assert n["G params"] == ""

  # Warnings name the missing file (log and report).
  missing_eval = os.path.join(three_runs[2], "eval", "results.jsonl")
  missing_summary = os.path.join(three_runs[2], "model_summary.json")
  logged = " ".join(r.getMessage() for r in caplog.records)
  assert missing_eval in logged and missing_summary in logged
  assert missing_eval in md.split("## Warnings", 1)[1]

  # The paper rows are in their own, labelled table.
  quoted = md.split("## Quoted from the paper (not measured here)", 1)[1]
  for model, fid in [("SNGAN-projection", "27.62"), ("SAGAN", "18.28"),
                     ("HamGAN-baby", "16.05"), ("YLG", "15.94"), ("HamGAN-strong", "14.77")]:
    assert f"| {model} |" in quoted and f"| {fid} | quoted from the paper |" in quoted
  assert "27.62" not in md.split("## Quoted from the paper", 1)[0]


def test_json_rows_match_table(three_runs, tmp_path):
  out = str(tmp_path / "cmp")
  reporting.write_comparison(three_runs, out)
  data = json.load(open(os.path.join(out, "comparison.json")))
  by_name = {r["run"]: r for r in data["runs"]}
  assert by_name["sagan_run"]["steps_per_sec"] == pytest.approx(1.6)
  assert by_name["ham_run"]["steps_per_sec"] == pytest.approx(2.75)
  key_a = f"{FID_A} [{PROTO_A}; generator: {EMA}]"
  key_b = f"{FID_B} [{PROTO_B}; generator: {EMA}]"
  assert by_name["ham_run"]["best"][key_a] == dict(
      kind="FID", metric=FID_A, protocol=PROTO_A, generator=EMA, step=200, value=28.125)
  assert by_name["ham_run"]["best"][key_b]["step"] == 200
  assert by_name["sagan_run"]["best"][key_b] is None
  assert [p["step"] for p in by_name["sagan_run"]["curves"][key_a]] == [100, 200, 300]
  assert by_name["none_run"]["best"][key_a] is None
  assert by_name["none_run"]["warnings"]
  assert {c["protocol"] for c in data["columns"]} == {PROTO_A, PROTO_B}
  assert [r["fid"] for r in data["paper_reference"]["rows"]] == [
      27.62, 18.28, 16.05, 15.94, 14.77]


def _has_colour(img, hex_colour, tol=0.02):
  rgb = np.array(mcolors.to_rgb(hex_colour))
  close = np.all(np.abs(img[..., :3] - rgb) < tol, axis=-1)
  return int(close.sum())


def test_plot_size_and_lines(three_runs, tmp_path):
  out = str(tmp_path / "cmp")
  reporting.write_comparison(three_runs, out)
  img = mimage.imread(os.path.join(out, "fid_vs_step.png"))
  assert img.shape[:2] == (500, 800)   # figsize (8, 5) at 100 dpi
  distinct = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
  assert len(distinct) > 20
  # Default colour cycle: run i gets colour Ci. Runs with FID points are drawn; the
  # run without results (C2) is not.
  cycle = ["#1f77b4", "#ff7f0e", "#2ca02c"]
  assert _has_colour(img, cycle[0]) > 30
  assert _has_colour(img, cycle[1]) > 30
  assert _has_colour(img, cycle[2]) == 0


def test_gin_parser():
  text = ("import hamgan.models\n"
          "# Parameters for Generator:\n"
          "hamgan.models.generator.Generator.context = 'ham_nmf'  # trailing comment\n"
          "Discriminator.context = \"sagan#1\"\n"
          "Generator.context_settings = {\n    'rank': 32,\n    'steps': 6}\n"
          "train.batch_size = %B\nB = 1024\ntrain.loss_fn = @hinge\n"
          "train.lr = 1e-4\n")
  b = reporting.parse_gin_bindings(text)
  assert reporting.lookup_binding(b, "g_context") == "ham_nmf"
  assert reporting.lookup_binding(b, "d_context") == "sagan#1"
  assert reporting.lookup_binding(b, "batch_size") == 1024
  assert b["Generator.context_settings"] == {"rank": 32, "steps": 6}
  assert b["train.loss_fn"] == "@hinge" and b["train.lr"] == pytest.approx(1e-4)


class _FakeSN(tf.keras.layers.Layer):
  """Holds the variables of a spectrally normalised dense layer, named as ours are."""

  def build(self, input_shape):
    self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 5), trainable=True)
    self.u = self.add_weight(name="sn_u", shape=(1, 5), trainable=False)
    self.sigma = self.add_weight(name="sn_sigma", shape=(), trainable=False)

  def call(self, x):
    return tf.matmul(x, self.kernel)


class _FakeContext(tf.keras.layers.Layer):
  """A context module: its `sigma` is a trainable residual scale."""

  def build(self, input_shape):
    self.sigma = self.add_weight(name="sigma", shape=(), trainable=True)

  def call(self, x):
    return x * self.sigma


def test_params_from_checkpoint_counts_trainable_only(tmp_path):
  gen = tf.keras.Sequential([_FakeSN(), tf.keras.layers.BatchNormalization(),
                             _FakeContext(), tf.keras.layers.Dense(2)])
  disc = tf.keras.Sequential([tf.keras.layers.Dense(4), _FakeSN(), _FakeContext()])
  gen.build((None, 3))
  disc.build((None, 3))
  ema = tf.keras.models.clone_model(gen)
  ema.build((None, 3))
  opt = tf.keras.optimizers.Adam()
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(gen(tf.ones((2, 3)), training=True))
  opt.apply_gradients(zip(tape.gradient(loss, gen.trainable_variables),
                          gen.trainable_variables))
  ckpt = tf.train.Checkpoint(generator=gen, discriminator=disc, ema_generator=ema,
                             g_optimizer=opt, step=tf.Variable(1, dtype=tf.int64))
  ckpt_dir = str(tmp_path / "run" / "checkpoints")
  tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=1).save()

  def n(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))
  assert reporting.params_from_checkpoint(ckpt_dir) == (n(gen), n(disc))
  assert n(gen) == 15 + 2 * 5 + 1 + 5 * 2 + 2   # sanity of the reference itself

  # With no model_summary.json the run falls back to the checkpoint.
  report = reporting.read_run(str(tmp_path / "run"))
  assert (report.g_params, report.d_params) == (n(gen), n(disc))


def test_not_a_run_dir(tmp_path, three_runs):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="is not a run directory"):
    reporting.write_comparison([three_runs[0], str(empty)], str(tmp_path / "o"))
  with pytest.raises(ValueError, match="is not a directory"):
    reporting.write_comparison([str(tmp_path / "nope")], str(tmp_path / "o"))
  with pytest.raises(ValueError, match="no run directories"):
    reporting.write_comparison([], str(tmp_path / "o"))
  assert not (tmp_path / "o").exists()


def _cli(*args):
  bindir = os.path.dirname(sys.executable)
  return subprocess.run([os.path.join(bindir, "hamgan-compare"), *args],
                        capture_output=True, text=True, timeout=120)


def test_cli_end_to_end(three_runs, tmp_path):
  out = str(tmp_path / "cli_out")
  # Flags may come before or between the run dirs.
  res = _cli(three_runs[0], f"--out={out}", *three_runs[1:])
  assert res.returncode == 0, res.stderr
  assert "3 runs" in res.stdout
  assert "| sagan_run | sagan | sagan | 256 | 500 / 1000 | 1.60 |" in res.stdout
  _, rows = _runs_table(open(os.path.join(out, "comparison.md")).read())
  assert list(rows) == ["sagan_run", "ham_run", "none_run"]
  assert os.path.getsize(os.path.join(out, "fid_vs_step.png")) > 1000

  bad = _cli(str(tmp_path), f"--out={out}")
  assert bad.returncode != 0 and "is not a run directory" in bad.stderr
  no_out = _cli(three_runs[0])
  assert no_out.returncode != 0 and "--out is required" in no_out.stderr
  helped = _cli("--help")
  assert "RUN_DIR" in helped.stdout and "--out" in helped.stdout


def _copy_tree(src, dst):
  for root, _, files in os.walk(src):
    rel = os.path.relpath(root, src)
    target = dst if rel == "." else f"{dst}/{rel}"
    tf.io.gfile.makedirs(target)
    for f in files:
      tf.io.gfile.copy(os.path.join(root, f), f"{target}/{f}", overwrite=True)


def test_remote_run_dirs_through_gfile(three_runs, tmp_path):
  """A URL (gs:// in real use; TF's in-memory ram:// here) is read and written by gfile."""
  remote = ["ram://bucket/runs/" + os.path.basename(r) for r in three_runs[:2]]
  for src, dst in zip(three_runs, remote):
    _copy_tree(src, dst)
  reporting.write_comparison(remote, "ram://bucket/compare")
  with tf.io.gfile.GFile("ram://bucket/compare/comparison.md") as f:
    _, rows = _runs_table(f.read())
  local_out = str(tmp_path / "local")
  reporting.write_comparison(three_runs[:2], local_out)
  _, local_rows = _runs_table(open(os.path.join(local_out, "comparison.md")).read())
  assert rows == local_rows
  with tf.io.gfile.GFile("ram://bucket/compare/fid_vs_step.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_unreadable_checkpoint_is_a_warning(tmp_path):
  run = tmp_path / "run"
  (run / "checkpoints").mkdir(parents=True)
  (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
  (run / "checkpoints" / "ckpt-1.index").write_bytes(b"not a checkpoint")
  report = reporting.read_run(str(run))
  assert report.g_params is None
  assert any("could not read the checkpoint" in w and str(run / "checkpoints") in w
             for w in report.warnings)
