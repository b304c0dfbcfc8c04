#!/usr/bin/env bash
# The loss x regularizer grid on the bundled 8x8 digits (16x16): 3 losses x 3 D regularizers, 1,500 generator
# steps each, DCGAN with a layer-norm D (gradient penalties need a D without batch norm), val/fid at
# steps 500/1000/1500 with the digits classifier. About 15 minutes on 2 idle CPU cores (27 on a busy machine).
# Extra arguments are passed on, e.g. `experiments/zoo_digits/run.sh train.steps=300`.
set -euo pipefail
cd "$(dirname "$0")/../.."
GANFORGE_TRAIN="${GANFORGE_TRAIN:-.venv/bin/ganforge-train}"
$GANFORGE_TRAIN -m \
  task_name=zoo_digits \
  'loss=nonsaturating,hinge,relativistic' \
  'loss/penalty=none,r1,dragan' \
  model.discriminator.norm=layer \
  train.steps=1500 \
  'logger=[csv]' \
  "$@"
