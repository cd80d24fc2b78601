#!/bin/bash
# Makes this folder: docs/compare_demo/run.sh (from the repository root, after `make demo`,
# whose digits classifier it reuses). Three 600-step demo runs that differ only in the
# context module of G and D, every 200th step evaluated, then hamgan-compare.
set -euo pipefail
B=.venv/bin
CLASSIFIER=runs/demo_digits/digits_classifier
[ -d "$CLASSIFIER" ] || { echo "run 'make demo' first: it trains $CLASSIFIER" >&2; exit 2; }
for ctx in none sagan ham_nmf; do
  extra=()
  if [ "$ctx" != ham_nmf ]; then  # the demo config's context settings are the Hamburger's
    extra=(--gin_param="Generator.context_settings = None"
           --gin_param="Discriminator.context_settings = None")
  fi
  "$B/hamgan-train" --gin_file=demo_digits --model_dir="runs/compare_demo/$ctx" \
    --gin_param="train.num_steps = 600" --gin_param="train.checkpoint_every = 200" \
    --gin_param="Generator.context = '$ctx'" --gin_param="Discriminator.context = '$ctx'" \
    "${extra[@]}"
  "$B/hamgan-eval" --model_dir="runs/compare_demo/$ctx" --all --num_samples=1000 \
    --classifier_path="$CLASSIFIER" --real_dataset=digits
done
"$B/hamgan-compare" runs/compare_demo/none runs/compare_demo/sagan runs/compare_demo/ham_nmf \
  --out=docs/compare_demo
