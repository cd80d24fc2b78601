#!/bin/bash
# Makes this folder: docs/compare_demo/run.sh, from the repository root. Three 600-step
# runs of the demo configuration (gin_configs/demo_mnist.gin) that differ only in the
# context module of G and D, every 200th step evaluated with 1,000 samples by the demo's
# MNIST stand-in classifier (trained once and cached, as `make demo` does), then
# hamgan-compare. B=path/to/venv/bin picks the environment (default: the one make uses).
set -euo pipefail
B=${B:-.venv-current/bin}
[ -x "$B/hamgan-train" ] || B=.venv/bin
CLASSIFIER=$("$B/python" -c "from hamgan.evaluation import digits_classifier as d
print(d.cached_classifier('mnist5k')[0])" | tail -n 1)
for ctx in none sagan ham_nmf; do
  extra=()
  if [ "$ctx" != ham_nmf ]; then  # the demo config's context settings are the Hamburger's
    extra=(--gin_param="Generator.context_settings = None"
           --gin_param="Discriminator.context_settings = None")
  fi
  "$B/hamgan-train" --gin_file=demo_mnist --model_dir="runs/compare_demo/$ctx" \
    --gin_param="train.num_steps = 600" --gin_param="train.checkpoint_every = 200" \
    --gin_param="Generator.context = '$ctx'" --gin_param="Discriminator.context = '$ctx'" \
    "${extra[@]}"
  "$B/hamgan-eval" --model_dir="runs/compare_demo/$ctx" --all --num_samples=1000 \
    --classifier_path="$CLASSIFIER" --real_dataset=mnist5k
done
"$B/hamgan-compare" runs/compare_demo/none runs/compare_demo/sagan runs/compare_demo/ham_nmf \
  --out=docs/compare_demo
