#!/usr/bin/env bash
# Every loss of conf/loss/ over five seeds on the bundled digits, then ganforge-compare: one row per loss
# with mean ± std over the seeds and whether it differs from the best row beyond the seed spread.
# DCGAN with a layer-norm D (the same D for every loss), 1,000 generator steps, FID/KID (digits classifier)
# at steps 500 and 1,000. About 30 minutes on one CPU core (45 runs of 30-57 s).
# Extra arguments are passed on, e.g. `experiments/zoo_digits/seeds.sh train.steps=300`.
set -euo pipefail
cd "$(dirname "$0")/../.."
GANFORGE_TRAIN="${GANFORGE_TRAIN:-.venv/bin/ganforge-train}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
$GANFORGE_TRAIN -m \
  task_name=zoo_seeds \
  'loss=dragan,hinge,lsgan,minimax,nonsaturating,relativistic,rpgan,wgan,wgan_gp' \
  seed=0,1,2,3,4 \
  model.discriminator.norm=layer \
  train.steps=1000 \
  'metrics=[fid,kid]' metrics.every=500 \
  train.sample_every=0 \
  'logger=[csv]' \
  "$@"
# the sweep's comparison.md (and plots) is written by the multirun's end; to redo it:
#   ganforge-compare multirun/zoo_seeds/<date>_<time>
