#!/usr/bin/env bash
# The main job: the bundled Fashion-MNIST DiT (8-bit S) draws every class, a row
# per class, into demo.png; the bundled judge then says what it sees.
set -euo pipefail
tiledraw=${1:-build/tiledraw}
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/demo.png"
samples="$here/build/demo"
rm -rf "$samples" && mkdir -p "$samples"

start=$(date +%s%N)
"$tiledraw" generate --class all -b 8 --grid --steps 25 --cfg-scale 5 --seed 1 -o "$out"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "demo.png: a row per class (t-shirt/top, trouser, pullover, dress, coat, sandal, shirt,"
echo "sneaker, bag, ankle boot), 8 samples each, made in $((ms / 1000)).$(printf %03d $((ms % 1000))) s: $out"

# The judge, on tiledraw's runtime too: one image per class, in class order.
"$tiledraw" generate -q --class all --steps 25 --cfg-scale 5 --seed 2 -o "$samples/sample.png"
"$tiledraw" classify -m "$here/models/fashion-judge-8bit-s.safetensors" "$samples"/sample-{1..10}.png
