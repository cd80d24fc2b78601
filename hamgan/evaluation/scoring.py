"""Every metric of one evaluation, named by its protocol, from real statistics and features.

Names (n: the generated count as `metrics.count_label` writes it, with `-vs<real>`
appended when fewer real images were used than asked for; A: `<data set>-<split>`):

  fid{n}/A                  FID (from activations, or from mu/sigma when only those exist)
  is{n}, is{n}_10split_*    Inception Score, one split and the 10-split mean / std
  kid{n}/A, kid{n}_std/A    KID and its standard error                    (--kid)
  precision{n}_k3/A, recall{n}_k3/A     improved precision / recall       (--manifold)
  density{n}_k5/A, coverage{n}_k5/A     density / coverage                (--manifold)
  intra_fid{n}/A            mean over classes of each class's FID         (--intra_fid)
  conditional_accuracy{n}   samples of class c that the classifier puts in c
                                                          (--conditional_accuracy)

`check_request` says, before any sample is drawn, which asked-for metrics the real
side cannot give (statistics without features, data without labels).
"""
import numpy as np

from hamgan.evaluation import manifold as manifold_lib
from hamgan.evaluation import metrics

IS_SPLITS = 10


def sample_label(num_generated, real_count=None, real_asked=None):
  """'2k', or '2k-vs297' when only 297 real images were there of the 2000 asked for."""
  label = metrics.count_label(num_generated)
  if real_asked is not None and real_count is not None and real_count < real_asked:
    label += f"-vs{metrics.count_label(real_count)}"
  return label


def metric_set(kid=False, manifold=False, intra_fid=False, conditional_accuracy=False):
  """The metrics asked for, as a sorted list (a part of the results row key)."""
  names = ["fid", "is"] + [n for n, on in (("kid", kid), ("manifold", manifold),
                                           ("intra_fid", intra_fid),
                                           ("conditional_accuracy", conditional_accuracy))
                           if on]
  return sorted(names)


def check_request(has_features, has_labels, kid=False, manifold=False, intra_fid=False,
                  source="the real statistics"):
  """Raises ValueError when an asked-for metric needs what the real side lacks."""
  need = [flag for flag, on in (("--kid", kid), ("--manifold", manifold),
                                ("--intra_fid", intra_fid)) if on]
  if need and not has_features:
    raise ValueError(
        f"{', '.join(need)} need the real features, but {source} hold only mu and sigma "
        "(FID is all they support); drop those flags or pass --real_images / "
        "--real_dataset instead of --real_stats.")
  if intra_fid and not has_labels:
    raise ValueError(f"--intra_fid needs class labels on both sides, but {source} have "
                     "none; add `labels` to the .npz, or drop --intra_fid.")


def score(real, fake, label, against, kid=False, manifold=False, intra_fid=False,
          conditional_accuracy=False, num_classes=None):
  """Returns ({metric name: float}, {extra row fields}) for RealStats `real`, Features `fake`.

  `num_classes`: the generator's class count, checked against the classifier's outputs
  for the conditional accuracy.
  """
  check_request(real.activations is not None, real.labels is not None, kid, manifold,
                intra_fid)
  if real.activations is not None:
    fid = metrics.frechet_distance(real.activations, fake.pool_3)
  else:
    gen = fake.pool_3.astype(np.float64)
    fid = metrics.frechet_distance_from_moments(
        real.mean, real.cov, gen.mean(axis=0), np.cov(gen, rowvar=False))
  base = metrics.count_label(fake.count)
  values = {f"fid{label}/{against}": fid, f"is{base}": metrics.inception_score(fake.logits)}
  mean, std = metrics.split_inception_score(fake.logits, IS_SPLITS)
  values[f"is{base}_{IS_SPLITS}split_mean"] = mean
  values[f"is{base}_{IS_SPLITS}split_std"] = std
  extra = {}
  if kid:
    value, err = metrics.kernel_distance(real.activations, fake.pool_3)
    values[f"kid{label}/{against}"] = value
    values[f"kid{label}_std/{against}"] = err
  if manifold:
    pr_k, dc_k = manifold_lib.PRECISION_RECALL_K, manifold_lib.DENSITY_COVERAGE_K
    m = manifold_lib.manifold_metrics(real.activations, fake.pool_3, pr_k, dc_k)
    for name, k in (("precision", pr_k), ("recall", pr_k), ("density", dc_k),
                    ("coverage", dc_k)):
      values[f"{name}{label}_k{k}/{against}"] = m[name]
  if intra_fid:
    mean, per_class = metrics.intra_class_fid(real.activations, real.labels,
                                              fake.pool_3, fake.labels)
    values[f"intra_fid{label}/{against}"] = mean
    extra["intra_fid_per_class"] = {str(c): v for c, v in per_class.items()}
  if conditional_accuracy:
    if fake.labels is None:
      raise ValueError("--conditional_accuracy needs the class of every generated image; "
                       "these images have none (save them as `labels` in the .npz).")
    values[f"conditional_accuracy{base}"] = metrics.conditional_accuracy(
        fake.logits, fake.labels, num_classes)
  return values, extra
