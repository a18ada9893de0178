"""Captions for Fashion-MNIST images: the class in several names, and what the
image's pixels show, measured: how bright the garment is (dark, grey, light),
how large it is, and whether it carries a printed pattern or is plain. The
training script (tools/train_text_to_image.py) captions with these rules; the
judged tests prompt with `held_out_prompt`, phrasings never used in training.

  measure(images, labels)   per image, its brightness, size and pattern bins
  caption(label, attributes, generator)   one random caption
  every_phrase()            each noun and attribute word once (vocabulary)
  held_out_prompt(label, brightness, generator)   an unseen phrasing"""
import re

import torch

# CLIP's pre-tokenization on ASCII text: contractions, letter runs, single
# digits, runs of other symbols.
WORD = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

# The names of each class; plural nouns take no article.
NOUNS = [
    ["t-shirt", "tee", "top", "tee shirt"],
    ["trousers", "jeans", "pants", "pair of trousers", "pair of jeans", "slacks"],
    ["pullover", "sweater", "jumper"],
    ["dress", "gown", "frock"],
    ["coat", "jacket", "overcoat"],
    ["sandal", "pair of sandals", "flip-flop"],
    ["shirt", "blouse", "button-up shirt"],
    ["sneaker", "trainer", "running shoe"],
    ["bag", "handbag", "purse"],
    ["ankle boot", "boot", "bootie"],
]
PLURAL = {"trousers", "jeans", "pants", "slacks"}
BRIGHTNESS = {"dark": ["dark", "black", "dark grey"], "grey": ["grey", "gray", "mid grey"],
              "light": ["light", "white", "pale", "light grey"]}
SIZE = {"small": ["small", "little", "narrow"], "large": ["large", "big", "wide"]}
PATTERN = {"patterned": ["patterned", "printed"], "plain": ["plain"]}
TEMPLATES = ["{}", "a photo of {}", "a picture of {}", "{} on a black background", "a product shot of {}"]
# Held out: the judged tests prompt with these phrasings, which training never
# saw, made of words it did see (a word it never saw would be a token whose
# embedding training never moved).
HELD_OUT_TEMPLATES = ["{} photo", "black background, {}", "a photo: {}", "picture of {} on black"]


def measure(images, labels):
    """Each image's bins, from its pixels ([N, 1, H, W] in [-1, 1]): the
    garment is what is brighter than the background; its mean brightness and
    its area are split in thirds within its class (dark / grey / light, small /
    - / large), and the mean absolute Laplacian inside it, relative to its
    brightness, marks the top quarter 'patterned' and the bottom 40% 'plain'."""
    x = (images[:, 0] + 1) * 127.5
    mask = x > 25
    area = mask.sum((1, 2)).float().clamp(min=1)
    brightness = (x * mask).sum((1, 2)) / area
    lap = (4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]).abs()
    inner = mask[:, 1:-1, 1:-1]
    texture = (lap * inner).sum((1, 2)) / inner.sum((1, 2)).clamp(min=1) / brightness.clamp(min=1)
    out = [None] * images.shape[0]
    for c in range(10):
        index = (labels == c).nonzero().flatten()

        def bins(values, cuts, names):
            q = torch.quantile(values[index], torch.tensor(cuts))
            return [names[int((v > q).sum())] for v in values[index].tolist()]

        b = bins(brightness, [1 / 3, 2 / 3], ["dark", "grey", "light"])
        s = bins(area, [1 / 3, 2 / 3], ["small", None, "large"])
        p = bins(texture, [0.4, 0.75], ["plain", None, "patterned"])
        for j, i in enumerate(index.tolist()):
            out[i] = {"brightness": b[j], "size": s[j], "pattern": p[j]}
    return out


def choice(options, generator):
    return options[int(torch.randint(0, len(options), (), generator=generator))]


def noun_phrase(noun, words):
    phrase = " ".join(words + [noun])
    if noun in PLURAL:
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(label, attributes, generator):
    """One caption: a template around [article] [size] [brightness] [pattern]
    noun, each attribute said with some probability, in several words."""
    words = []
    if attributes["size"] and torch.rand((), generator=generator) < 0.3:
        words.append(choice(SIZE[attributes["size"]], generator))
    if torch.rand((), generator=generator) < 0.8:
        words.append(choice(BRIGHTNESS[attributes["brightness"]], generator))
    if attributes["pattern"] and torch.rand((), generator=generator) < 0.3:
        words.append(choice(PATTERN[attributes["pattern"]], generator))
    phrase = noun_phrase(choice(NOUNS[label], generator), words)
    return choice(TEMPLATES, generator).format(phrase)


def every_phrase():
    words = [w for names in list(BRIGHTNESS.values()) + list(SIZE.values()) + list(PATTERN.values()) for w in names]
    return [t.format(noun_phrase(n, [])) for n in sum(NOUNS, []) for t in TEMPLATES] + words


def held_out_prompt(label, brightness, generator):
    """A prompt in a phrasing training never used; `brightness` None leaves it out."""
    words = [choice(BRIGHTNESS[brightness], generator)] if brightness else []
    return choice(HELD_OUT_TEMPLATES, generator).format(noun_phrase(choice(NOUNS[label], generator), words))
