#!/usr/bin/env bash
# The main job until the default model exists (it arrives with the Fashion-MNIST
# DiT): convert the bundled tiny DiT-shaped checkpoint to 8-bit S and inspect it.
set -euo pipefail
tiledraw=${1:-build/tiledraw}
here=$(cd "$(dirname "$0")/.." && pwd)
source_model="$here/examples/tiny-dit-f16.safetensors"
out_dir="$here/build/demo"
mkdir -p "$out_dir"

echo "tiledraw demo: there is no default image model yet, so this converts the bundled"
echo "tiny DiT-shaped checkpoint (random F16 weights) to 8-bit S and inspects the result."
echo
"$tiledraw" info
echo
"$tiledraw" convert "$source_model" "$out_dir/tiny-dit-8bit-s.safetensors"
echo
"$tiledraw" inspect "$out_dir/tiny-dit-8bit-s.safetensors"
