#!/usr/bin/env bash
# The main job: the bundled text-to-image model (8-bit S, trained here on
# Fashion-MNIST with captions) draws a handful of prompts, a row per prompt,
# into demo.png; the bundled judge then says what it sees in each row.
set -euo pipefail
tiledraw=${1:-build/tiledraw}
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/demo.png"
samples="$here/build/demo"
rm -rf "$samples" && mkdir -p "$samples"

prompts=("a dark ankle boot" "light grey trousers" "a white sneaker" "a patterned dress"
         "a black handbag" "a pale pullover")
flags=(--steps 20 --cfg-scale 5 --seed 1)
prompt_flags=()
for prompt in "${prompts[@]}"; do prompt_flags+=(-p "$prompt"); done

start=$(date +%s%N)
"$tiledraw" generate "${prompt_flags[@]}" -b 8 --grid "${flags[@]}" -o "$out"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "demo.png: 8 images per prompt, a row each, made in $((ms / 1000)).$(printf %03d $((ms % 1000))) s: $out"

# The judge, on tiledraw's runtime too: each row's first image.
"$tiledraw" generate -q "${prompt_flags[@]}" "${flags[@]}" -o "$samples/row.png"
for i in "${!prompts[@]}"; do
  printf 'row %d, "%s": ' $((i + 1)) "${prompts[$i]}"
  "$tiledraw" classify -m "$here/models/fashion-judge-8bit-s.safetensors" "$samples/row-$((i + 1)).png"
done
