"""hamgan.bench.op_profile: per-op-type kernel time from a tf.profiler trace."""
import pytest
import tensorflow as tf

from hamgan.bench import op_profile


def test_summarize_shares_and_per_step_figures():
  profile = op_profile.OpProfile(
      ms={"_MklNativeFusedConv2D": 30.0, "_MklMatMul": 10.0, "Mul": 40.0, "AddV2": 20.0},
      count={"_MklNativeFusedConv2D": 4, "_MklMatMul": 6, "Mul": 50, "AddV2": 40},
      steps=2, wall_s=0.1)
  s = op_profile.summarize(profile, top=2)
  assert s["ops_per_step"] == 50.0
  assert s["op_ms_per_step"] == 50.0
  assert s["arithmetic_share"] == pytest.approx(0.4)  # (30 + 10) / 100
  assert s["wall_ms_per_step"] == pytest.approx(50.0)
  assert s["top"] == [("Mul", 20.0, 25.0), ("_MklNativeFusedConv2D", 15.0, 2.0)]
  table = op_profile.format_table([("x", s)])
  assert "| x | 50 | 50.0 | 40% | 50.0 | Mul 20.0 (25); _MklNativeFusedConv2D 15.0 (2) |" in table


def test_profile_counts_the_kernels_a_loop_runs():
  a = tf.random.normal([64, 64])

  @tf.function
  def loop(n):
    x = a
    for _ in tf.range(n):
      x = tf.nn.tanh(tf.matmul(x, a) * 0.01)
    return x

  loop(tf.constant(1)).numpy()
  profile = op_profile.profile_ops(lambda: loop(tf.constant(5)).numpy(), steps=5)
  matmuls = sum(n for k, n in profile.count.items() if "MatMul" in k)
  tanhs = sum(n for k, n in profile.count.items() if k == "Tanh")
  assert matmuls == 5 and tanhs == 5
  assert not any(k in op_profile.EXECUTOR_SCOPES for k in profile.count)
  assert 0.0 < op_profile.summarize(profile)["arithmetic_share"] < 1.0
