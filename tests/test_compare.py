"""hamgan-compare: table cells, per-protocol columns, JSON rows, the plot, parameter
counts of the real models, the shared gin-config reader, and errors."""
import json
import logging
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
from matplotlib import colors as mcolors
from matplotlib import image as mimage

from hamgan import models
from hamgan import run_config
from hamgan.compare import params
from hamgan.compare import paper
from hamgan.compare import report
from hamgan.compare import runs
from hamgan.compare import table
from hamgan import run_dir
from hamgan.training import trainer as trainer_lib

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


def _write_run(root, name, g_ctx, d_ctx, batch, steps, speeds, evals, checkpoints=None):
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
  if checkpoints is not None:
    _copy_tree(checkpoints, os.path.join(run, "checkpoints"))
  return run


def _eval_row(step, protocol, metrics, generator=EMA):
  return dict(step=step, checkpoint=f"ckpt-{step}", generator=generator, metrics=metrics,
              protocol=protocol, num_samples=50000, classifier="inception",
              wall_time=float(step), config_sha256="0" * 64)


NUM_CLASSES = 3


def _model_fns(context, settings=None, ch=2):
  """Small 32x32 G and D builders with the trainer's `fn(name=...)` signature."""
  if settings is None and context.startswith("ham_"):
    settings = {"rank": 2, "steps": 2}
  if context == "ylg":  # C/8 channels split over heads: 2 heads keep the model small
    settings, ch = {"heads": 2}, max(ch, 8)

  def generator_fn(name):
    return models.Generator(image_size=32, num_classes=NUM_CLASSES, ch=ch, z_dim=8,
                            context=context, context_settings=settings, name=name)

  # D's context module is never class-conditional (D has its projection term).
  d_settings = {k: v for k, v in settings.items() if k != "conditional"} if settings else None

  def discriminator_fn(name):
    return models.Discriminator(image_size=32, num_classes=NUM_CLASSES, ch=ch,
                                context=context, context_settings=d_settings, name=name)
  return generator_fn, discriminator_fn


def _dataset_fn(input_context, per_replica_batch):
  del input_context
  images = np.zeros((4, 32, 32, 3), np.float32)
  labels = np.arange(4, dtype=np.int32) % NUM_CLASSES
  return tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(
      per_replica_batch, drop_remainder=True)


def _trainer_checkpoint(model_dir, context, settings=None):
  """A checkpoint exactly as hamgan-train writes it, and the models' trainable counts.

  The counts are computed here from the Keras models' trainable_variables, independently
  of the checkpoint's variable names that hamgan.compare.params reads.
  """
  g_fn, d_fn = _model_fns(context, settings)
  trainer = trainer_lib.Trainer(
      str(model_dir), trainer_lib.TrainConfig(batch_size=4, num_steps=1, seed=3),
      generator_fn=g_fn, discriminator_fn=d_fn, dataset_fn=_dataset_fn)
  trainer.save(0)

  def n(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))
  return (os.path.join(str(model_dir), "checkpoints"), n(trainer.generator),
          n(trainer.discriminator), trainer)


@pytest.fixture(scope="module")
def ham_checkpoint(tmp_path_factory):
  """(checkpoint dir, G count, D count) of a small ham_nmf run."""
  ckpt_dir, g, d, _ = _trainer_checkpoint(tmp_path_factory.mktemp("ham_trainer"), "ham_nmf")
  return ckpt_dir, g, d


@pytest.fixture
def three_runs(tmp_path, ham_checkpoint):
  """sagan (protocol A), ham (A and B, a checkpoint), none (no eval file)."""
  root = str(tmp_path / "runs")
  sagan = _write_run(
      root, "sagan_run", "sagan", "sagan", 256, 1000,
      # Median 1.6 (the mean, 2.86, would differ): a warm-up outlier must not count.
      speeds=[0.5, 1.5, 1.6, 1.7, 9.0],
      evals=[_eval_row(100, PROTO_A, {FID_A: 40.0, "is50k": 5.0, "is50k_10split_mean": 9.0,
                                      "is50k_10split_std": 0.1}),
             _eval_row(200, PROTO_A, {FID_A: 30.0, "is50k": 6.0}),
             _eval_row(300, PROTO_A, {FID_A: 32.5, "is50k": 8.25})])
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
      checkpoints=ham_checkpoint[0])
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


def test_table_cells_per_protocol(three_runs, ham_checkpoint, tmp_path, caplog):
  out = str(tmp_path / "cmp")
  with caplog.at_level(logging.WARNING, logger="hamgan.compare"):
    report.write_comparison(three_runs, out)
  md = open(os.path.join(out, "comparison.md")).read()
  headers, rows = _runs_table(md)
  assert list(rows) == ["sagan_run", "ham_run", "none_run"]

  s, h, n = rows["sagan_run"], rows["ham_run"], rows["none_run"]
  assert (s["context G"], s["context D"], s["batch"]) == ("sagan", "sagan", "256")
  assert (h["context G"], h["context D"], h["batch"]) == ("ham_nmf", "ham_nmf", "128")
  assert s["steps (done / planned)"] == "500 / 1000"
  assert s["it/s"] == "1.60" and h["it/s"] == "2.75" and n["it/s"] == "4.00"
  _, g_params, d_params = ham_checkpoint
  assert h["G params"] == f"{g_params:,}" and h["D params"] == f"{d_params:,}"
  assert s["G params"] == s["D params"] == ""   # no checkpoint: blank, and a warning

  fid_a = _header(headers, "FID", FID_A, PROTO_A)
  is_a = _header(headers, "IS", "is50k", PROTO_A)
  fid_b = _header(headers, "FID", FID_B, PROTO_B)
  is_b = _header(headers, "IS", "is5k", PROTO_B)
  fid_raw = _header(headers, "FID", FID_A, PROTO_A, RAW)
  is_raw = _header(headers, "IS", "is50k", PROTO_A, RAW)
  # Exactly six results columns: FID and IS per (protocol, generator); the 10-split
  # IS is not a column.
  assert len(headers) == len(table.RUN_HEADERS) + 6
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
  missing_eval = os.path.join(three_runs[2], "eval")   # no rows there (hamgan.run_dir)
  missing_ckpt = os.path.join(three_runs[2], "checkpoints")
  logged = " ".join(r.getMessage() for r in caplog.records)
  assert missing_eval in logged and missing_ckpt in logged
  assert missing_eval in md.split("## Warnings", 1)[1]

  # The paper rows are in their own, labelled table, each with its source.
  quoted = md.split("## Quoted from the paper (not measured here)", 1)[1]
  for model, fid in [("SNGAN-projection", "27.62"), ("SAGAN", "18.28"),
                     ("HamGAN-baby", "16.05"), ("YLG", "15.94"), ("HamGAN-strong", "14.77")]:
    assert f"| {model} |" in quoted
    assert f"| {fid} | quoted: Geng et al. 2021, section 3.5" in quoted
  assert "27.62" not in md.split("## Quoted from the paper", 1)[0]


def test_json_rows_match_table(three_runs, tmp_path):
  out = str(tmp_path / "cmp")
  report.write_comparison(three_runs, out)
  data = json.load(open(os.path.join(out, "comparison.json")))
  by_name = {r["run"]: r for r in data["runs"]}
  assert by_name["sagan_run"]["steps_per_sec"] == pytest.approx(1.6)
  assert by_name["ham_run"]["steps_per_sec"] == pytest.approx(2.75)
  key_a = f"{FID_A} [{PROTO_A}; generator: {EMA}]"
  key_b = f"{FID_B} [{PROTO_B}; generator: {EMA}]"
  assert by_name["ham_run"]["best"][key_a] == dict(
      kind="FID", metric=FID_A, protocol=PROTO_A, generator=EMA, variant="", step=200,
      value=28.125)
  assert by_name["ham_run"]["best"][key_b]["step"] == 200
  assert by_name["sagan_run"]["best"][key_b] is None
  assert [p["step"] for p in by_name["sagan_run"]["curves"][key_a]] == [100, 200, 300]
  assert by_name["none_run"]["best"][key_a] is None
  assert by_name["none_run"]["warnings"]
  assert {c["protocol"] for c in data["columns"]} == {PROTO_A, PROTO_B}
  assert [r["fid"] for r in data["paper_reference"]["rows"]] == [
      27.62, 18.28, 16.05, 15.94, 14.77]
  assert all("section 3.5" in r["source"] for r in data["paper_reference"]["rows"])


def _has_colour(img, hex_colour, tol=0.02):
  rgb = np.array(mcolors.to_rgb(hex_colour))
  close = np.all(np.abs(img[..., :3] - rgb) < tol, axis=-1)
  return int(close.sum())


def test_plot_size_and_lines(three_runs, tmp_path):
  out = str(tmp_path / "cmp")
  report.write_comparison(three_runs, out)
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


GIN_TEXT = ("import hamgan.models\n"
            "# Parameters for Generator:\n"
            "hamgan.models.generator.Generator.context = 'ham_nmf'  # trailing comment\n"
            "Discriminator.context = \"sagan#1\"\n"
            "Generator.context_settings = {\n    'rank': 32,\n    'steps': 6}\n"
            "train.batch_size = %B\nB = 1024\ntrain.loss_fn = @hinge\n"
            "train.g_lr = 1e-4\neval/train.dataset = 'cifar10'\ntrain.dataset = 'digits'\n")


def test_gin_reader():
  b = run_config.parse_bindings(GIN_TEXT)
  assert run_config.lookup(b, "Generator.context") == "ham_nmf"
  assert run_config.lookup(b, "Discriminator.context") == "sagan#1"
  assert run_config.lookup(b, "train.batch_size") == 1024   # the macro's value
  assert b["Generator.context_settings"] == {"rank": 32, "steps": 6}
  assert b["train.loss_fn"] == "@hinge" and isinstance(b["train.loss_fn"], run_config.Reference)
  assert b["train.g_lr"] == pytest.approx(1e-4)
  assert run_config.lookup(b, "train.dataset") == "digits"   # unscoped wins over eval/
  assert run_config.lookup(run_config.parse_bindings("s/G.x = 1\n"), "G.x") == 1
  assert run_config.lookup(b, "train.num_steps") is None
  # Contexts chosen by gin reference show as their names.
  assert [runs.context_name(run_config.parse_bindings(f"G.context = {v}")["G.context"])
          for v in ("'ylg'", "@ham_nmf", "@hamgan.contexts.ham_cd", "@s/sagan()")] == [
              "ylg", "ham_nmf", "ham_cd", "sagan"]


def test_compare_and_evaluation_read_the_config_alike(tmp_path):
  """hamgan-compare's settings and hamgan-eval's config_value come from one reader."""
  run = tmp_path / "run"
  run.mkdir()
  (run / "operative_config.gin").write_text(GIN_TEXT)
  r = runs.read_run(str(run))
  assert (r.g_context, r.d_context, r.batch_size) == ("ham_nmf", "sagan#1", 1024)
  for binding in ("Generator.context", "train.batch_size", "train.dataset"):
    assert run_dir.config_value(str(run), binding) == run_config.lookup(
        run_config.parse_bindings(GIN_TEXT), binding)
  # Not a literal string or number: None, as before.
  assert run_dir.config_value(str(run), "train.loss_fn") is None
  assert run_dir.config_value(str(run), "Generator.context_settings") is None


def test_settings_read_from_the_trainers_operative_config(tmp_path):
  """The bindings compare shows exist: read back from the operative config of a real
  hamgan-train set-up (demo config, shrunk), they give the values that were bound."""
  from hamgan.cli import train as train_cli  # pylint: disable=import-outside-toplevel
  model_dir = str(tmp_path / "run")
  try:
    train_cli.build_trainer(
        ["demo_digits"],
        ["Generator.ch = 2", "Discriminator.ch = 2", "Generator.z_dim = 8",
         "Generator.context = @sagan", "Discriminator.context = 'none'",
         "Generator.context_settings = None", "Discriminator.context_settings = None",
         "train.batch_size = 4", "train.num_steps = 7"], model_dir)
    # What the trainer saves as operative_config.gin when its loop starts.
    text = gin.operative_config_str()
  finally:
    gin.clear_config()
  with open(os.path.join(model_dir, "operative_config.gin"), "w") as f:
    f.write(text)
  r = runs.read_run(model_dir)
  assert (r.g_context, r.d_context, r.batch_size, r.num_steps) == ("sagan", "none", 4, 7)


@pytest.mark.parametrize("context,settings", [
    ("none", None), ("sagan", None), ("ylg", None), ("ham_nmf", None), ("ham_cd", None),
    ("ham_vq", None),
    # Online bases (a non-trainable `bases` variable) and a class-conditional BN.
    ("ham_nmf", {"rank": 2, "steps": 2, "init": "online", "conditional": True}),
])
def test_params_count_the_real_models(tmp_path, context, settings):
  """The table's counts equal the trainable variables of hamgan's own G and D.

  The checkpoint is written by the real Trainer and also holds state (spectral-norm
  vectors, BN statistics, the Hamburger's seed and error, EMA G, optimizer slots),
  none of which may be counted.
  """
  ckpt_dir, g_count, d_count, trainer = _trainer_checkpoint(tmp_path / "run", context,
                                                            settings)
  assert params.params_from_checkpoint(ckpt_dir) == (g_count, d_count)
  # The check means something: G holds state that a count of everything would include.
  g_state = sum(int(np.prod(v.shape)) for v in trainer.generator.non_trainable_variables)
  assert g_state > 0
  if context.startswith("ham_"):
    names = [v.name for v in trainer.generator.non_trainable_variables]
    assert any("last_relative_error" in n for n in names)
  # read_run reports the same numbers.
  r = runs.read_run(str(tmp_path / "run"))
  assert (r.g_params, r.d_params) == (g_count, d_count)


def test_paper_figures_file_names_its_sources(tmp_path):
  figures = paper.load()
  assert [(r["model"], r["fid"]) for r in figures.rows] == [
      ("SNGAN-projection", 27.62), ("SAGAN", 18.28), ("HamGAN-baby", 16.05),
      ("YLG", 15.94), ("HamGAN-strong", 14.77)]
  assert all(r["source"] for r in figures.rows) and "1.54" in figures.speed
  broken = tmp_path / "figures.json"
  data = json.load(open(paper.FIGURES_FILE))
  del data["quality"]["rows"][1]["source"]
  broken.write_text(json.dumps(data))
  with pytest.raises(ValueError, match=r"missing field .*source"):
    paper.load(str(broken))


def test_not_a_run_dir(tmp_path, three_runs):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="is not a run directory"):
    report.write_comparison([three_runs[0], str(empty)], str(tmp_path / "o"))
  with pytest.raises(ValueError, match="is not a directory"):
    report.write_comparison([str(tmp_path / "nope")], str(tmp_path / "o"))
  with pytest.raises(ValueError, match="no run directories"):
    report.write_comparison([], str(tmp_path / "o"))
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
  report.write_comparison(remote, "ram://bucket/compare")
  with tf.io.gfile.GFile("ram://bucket/compare/comparison.md") as f:
    _, rows = _runs_table(f.read())
  local_out = str(tmp_path / "local")
  report.write_comparison(three_runs[:2], local_out)
  _, local_rows = _runs_table(open(os.path.join(local_out, "comparison.md")).read())
  # TF's checkpoint reader cannot open a bundle on ram:// (it can on gs://), so there
  # the parameter cells are blank, with a warning; everything else is read alike.
  params_cells = ("G params", "D params")
  assert local_rows["ham_run"]["G params"] and not rows["ham_run"]["G params"]
  for name, row in local_rows.items():
    assert {k: v for k, v in rows[name].items() if k not in params_cells} == {
        k: v for k, v in row.items() if k not in params_cells}
  with tf.io.gfile.GFile("ram://bucket/compare/fid_vs_step.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_unreadable_checkpoint_is_a_warning(tmp_path):
  run = tmp_path / "run"
  (run / "checkpoints").mkdir(parents=True)
  (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
  (run / "checkpoints" / "ckpt-1.index").write_bytes(b"not a checkpoint")
  r = runs.read_run(str(run))
  assert r.g_params is None
  assert any("could not read the checkpoint" in w and str(run / "checkpoints") in w
             for w in r.warnings)


def test_rows_of_other_standing_statistics_are_other_columns(tmp_path):
  """EMA G with stored vs standing statistics at one step: two columns, never one."""
  stored = dict(_eval_row(100, PROTO_A, {FID_A: 4.0, "is50k": 9.0}), standing_batches=0)
  standing = dict(_eval_row(100, PROTO_A, {FID_A: 7.5, "is50k": 9.5}), standing_batches=16)
  run = _write_run(str(tmp_path), "r", "none", "none", 16, 100, speeds=[1.0],
                   evals=[stored, standing])
  (report,) = runs.read_runs([run])
  fid_cols = [c for c in runs.columns_of([report]) if c.kind == "FID"]
  assert sorted(c.variant for c in fid_cols) == ["standing batches: 0", "standing batches: 16"]
  values = {c.variant: report.points(c) for c in fid_cols}
  assert values == {"standing batches: 0": [(100, 4.0)], "standing batches: 16": [(100, 7.5)]}
  assert all(c.setting.endswith(f"generator: {EMA}; {c.variant}") for c in fid_cols)
