#!/usr/bin/env python3
"""End to end on the bundled text-to-image model: prompts in phrasings its
training never used (tools/captions.py, HELD_OUT_TEMPLATES, with every name of
every class), images judged by the bundled classifier on tiledraw's runtime.

  tests/text_model_test.py TILEDRAW_BINARY MODELS_DIR [--per-class N]

Checks, for the 8-bit S model and the same weights on the float path:
  - at least 80% of the images are judged the class their prompt names;
  - the two precisions agree within 3 points;
  - "dark X" / "light X" with the same seed: the garment's mean brightness
    moves the asked way in at least 90% of pairs;
  - a negative prompt: "X" with -n "dark" is brighter than with -n "light"
    in at least 75% of pairs.
Standard library only (tests/png_pixels.py reads the PNGs)."""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from captions import HELD_OUT_TEMPLATES, NOUNS, noun_phrase  # noqa: E402
from png_pixels import read_png  # noqa: E402

STEPS, CFG, SEED = 20, 5.0, 4321
MIN_ACCURACY, MAX_GAP, MIN_PAIRS, MIN_NEGATIVE = 0.80, 0.03, 0.90, 0.75


def garment_brightness(path):
    """Mean brightness of the pixels brighter than the black background."""
    _, _, channels, data = read_png(path)
    shown = min(channels, 3)
    grey = [sum(data[i:i + shown]) / shown for i in range(0, len(data), channels)]
    pixels = [v for v in grey if v > 25]
    return sum(pixels) / len(pixels) if pixels else 0.0


def generate(binary, model, precision, prompt, count, seed, out, negative=""):
    subprocess.run([binary, "generate", "-q", "-m", model, "--precision", precision, "-p", prompt, "-n", negative,
                    "-b", str(count), "--steps", str(STEPS), "--cfg-scale", str(CFG), "--seed", str(seed),
                    "-o", out], check=True)
    stem = out[:-len(".png")]
    return [out] if count == 1 else [f"{stem}-{i + 1}.png" for i in range(count)]


def judged_accuracy(binary, models, precision, per_class, tmp):
    """Each class: `per_class` images over its names and the held-out phrasings."""
    rng = random.Random(SEED)
    files, expected = [], []
    for label, names in enumerate(NOUNS):
        prompts = [rng.choice(HELD_OUT_TEMPLATES).format(noun_phrase(names[i % len(names)], []))
                   for i in range(min(per_class, 5))]
        for i, prompt in enumerate(prompts):
            count = per_class // len(prompts) + (i < per_class % len(prompts))
            out = os.path.join(tmp, f"{precision}-{label}-{i}.png")
            files += generate(binary, f"{models}/fashion-sd-8bit-s.safetensors", precision, prompt, count,
                              SEED + 100 * label + i, out)
            expected += [label] * count
    result = subprocess.run([binary, "classify", "--json", "-m", f"{models}/fashion-judge-8bit-s.safetensors", *files],
                            check=True, capture_output=True, text=True)
    per_class_right = [0] * 10
    for p, label in zip(json.loads(result.stdout), expected):
        per_class_right[label] += p["class"] == label
    return sum(per_class_right) / len(files), per_class_right


def brightness_pairs(binary, models, pairs_per_class, tmp):
    """Share of same-seed pairs where the asked brightness wins, by the prompt
    ("dark X" against "light X") and by the negative prompt ("X" with -n
    "light" against -n "dark"). A batch's images take seeds seed, seed + 1, ...
    in every call, so image i of one call pairs with image i of another."""
    model = f"{models}/fashion-sd-8bit-s.safetensors"
    prompt_wins = negative_wins = total = 0
    for label, names in enumerate(NOUNS):
        noun, seed = names[0], SEED + 1000 + 100 * label
        shade = {}
        for word in ("dark", "light"):
            shade[word] = [garment_brightness(f) for f in generate(
                binary, model, "auto", noun_phrase(noun, [word]), pairs_per_class, seed,
                os.path.join(tmp, f"pair-{word}-{label}.png"))]
            shade["-" + word] = [garment_brightness(f) for f in generate(
                binary, model, "auto", noun_phrase(noun, []), pairs_per_class, seed,
                os.path.join(tmp, f"negative-{word}-{label}.png"), word)]
        prompt_wins += sum(light > dark for dark, light in zip(shade["dark"], shade["light"]))
        negative_wins += sum(a > b for a, b in zip(shade["-dark"], shade["-light"]))
        total += pairs_per_class
    return prompt_wins / total, negative_wins / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("models")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--pairs-per-class", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        int8, int8_per_class = judged_accuracy(args.binary, args.models, "auto", args.per_class, tmp)
        flt, float_per_class = judged_accuracy(args.binary, args.models, "float", args.per_class, tmp)
        pairs, negative = brightness_pairs(args.binary, args.models, args.pairs_per_class, tmp)
    print(f"judge accuracy ({args.per_class} per class): 8-bit S {int8:.3f} {int8_per_class}, "
          f"float path {flt:.3f} {float_per_class}")
    print(f"brightness pairs: 'dark X' darker than 'light X' in {pairs:.0%}; "
          f"-n 'dark' brighter than -n 'light' in {negative:.0%}")
    failures = []
    if int8 < MIN_ACCURACY:
        failures.append(f"8-bit S accuracy {int8:.3f} < {MIN_ACCURACY}")
    if abs(int8 - flt) > MAX_GAP:
        failures.append(f"8-bit S and float differ by {abs(int8 - flt):.3f} > {MAX_GAP}")
    if pairs < MIN_PAIRS:
        failures.append(f"brightness pairs {pairs:.2f} < {MIN_PAIRS}")
    if negative < MIN_NEGATIVE:
        failures.append(f"negative prompt pairs {negative:.2f} < {MIN_NEGATIVE}")
    if failures:
        print("FAIL: " + "; ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
