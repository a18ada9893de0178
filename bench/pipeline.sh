#!/usr/bin/env bash
# Whole-pipeline timing of `tiledraw generate` on a DiT-XL/2-shaped model with
# the Stable Diffusion VAE decoder (random weights: tools/make_bench_models.py,
# then `tiledraw convert`), at 256 and 512 pixels with guidance (batch 2):
# load to first step, seconds per sampling step, VAE decode, and the arenas,
# for each matmul path.
#
#   bench/pipeline.sh TILEDRAW DIR [STEPS]
#
# DIR holds dit-xl-2-256-random-{f16,8bit-s}.safetensors and
# sd-vae-decoder-random-{f16,8bit-s}.safetensors.
set -euo pipefail
tiledraw=$1
dir=$2
steps=${3:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

printf "%-6s %-28s %8s %10s %10s %12s %12s\n" size path "load s" "s/step" "decode s" "DiT arena" "VAE arena"
for size in 256 512; do
  for path in vnni onednn float; do
    case $path in
      float) args=(-m "$dir/dit-xl-2-256-random-f16.safetensors" --vae "$dir/sd-vae-decoder-random-f16.safetensors") ;;
      *) args=(--accel "$path" -m "$dir/dit-xl-2-256-random-8bit-s.safetensors" --vae "$dir/sd-vae-decoder-random-8bit-s.safetensors") ;;
    esac
    "$tiledraw" generate "${args[@]}" -W "$size" -H "$size" --steps "$steps" --cfg-scale 4 --seed 1 --profile \
      -o "$out/image.png" >"$out/summary" 2>"$out/profile"
    summary=$(grep -o 'load [0-9.]* s, [0-9]* steps [0-9.]* s.*' "$out/summary")
    load=$(echo "$summary" | sed -E 's/load ([0-9.]+) s.*/\1/')
    sampling=$(echo "$summary" | sed -E 's/.* steps ([0-9.]+) s .*/\1/')
    decode=$(echo "$summary" | sed -E 's/.*VAE decode ([0-9.]+) s.*/\1/')
    arenas=($(grep -o 'arena [0-9.]* [KMG]iB' "$out/profile" | sed 's/arena //; s/ //'))
    per_step=$(awk -v s="$sampling" -v n="$steps" 'BEGIN { printf "%.2f", s / n }')
    label=$([ "$path" = float ] && echo "float (F16 file, f32 math)" || echo "8-bit S on $path")
    printf "%-6s %-28s %8s %10s %10s %12s %12s\n" "$size" "$label" "$load" "$per_step" "$decode" "${arenas[1]:-?}" "${arenas[0]:-?}"
  done
done
