#!/usr/bin/env python3
"""End to end on the bundled model: generate 50 images of every class with
fixed seeds, classify them with the bundled judge on tiledraw's runtime, and
check how often the judge recognises the intended class. Standard library only.
50 per class, not 10: at about 80% the count of 100 images moves by 4 points
from one seed to the next, that of 500 by under 2.

  tests/default_model_test.py TILEDRAW_BINARY MODELS_DIR

Runs the 8-bit S model on the default backend, and the same weights on the
float path (--precision float), which must agree within 3 points."""
import json
import os
import subprocess
import sys
import tempfile

PER_CLASS, STEPS, CFG, SEED = 50, 25, 5.0, 1234
MIN_ACCURACY, MAX_GAP = 0.80, 0.03


def accuracy(binary, models, precision, tmp):
    out = os.path.join(tmp, precision)
    os.makedirs(out)
    subprocess.run([binary, "generate", "-q", "-m", f"{models}/fashion-dit-8bit-s.safetensors", "--precision", precision,
                    "--class", "all", "-b", str(PER_CLASS), "--steps", str(STEPS), "--cfg-scale", str(CFG),
                    "--seed", str(SEED), "-o", f"{out}/sample.png"], check=True)
    files = [f"{out}/sample-{i + 1}.png" for i in range(10 * PER_CLASS)]
    result = subprocess.run([binary, "classify", "--json", "-m", f"{models}/fashion-judge-8bit-s.safetensors", *files],
                            check=True, capture_output=True, text=True)
    predictions = json.loads(result.stdout)
    per_class = [0] * 10
    for i, p in enumerate(predictions):
        per_class[i // PER_CLASS] += p["class"] == i // PER_CLASS
    return sum(per_class) / len(files), per_class


def main():
    binary, models = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        int8, int8_per_class = accuracy(binary, models, "auto", tmp)
        flt, float_per_class = accuracy(binary, models, "float", tmp)
    print(f"judge accuracy: 8-bit S {int8:.2f} {int8_per_class}, float path {flt:.2f} {float_per_class}")
    ok = int8 >= MIN_ACCURACY and abs(int8 - flt) <= MAX_GAP
    if not ok:
        print(f"FAIL: needs at least {MIN_ACCURACY:.2f} and a gap of at most {MAX_GAP:.2f}")
        sys.exit(1)


if __name__ == "__main__":
    main()
