"""Captions for Fashion-MNIST images: the class in several names, and what the
image's pixels show, measured: how bright the garment is (dark, grey, light),
how large it is, and whether it carries a printed pattern or is plain. The
training script (tools/train_text_to_image.py) captions with these rules; the
judged tests prompt with `held_out_prompt`, phrasings never used in training.

  caption(label, attributes, rng)   one random caption (rng: random.Random)
  every_phrase()            each noun and attribute word once (vocabulary)
  held_out_prompt(label, brightness, rng)   an unseen phrasing
Standard library only: the judged tests import it too."""
import re

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


def noun_phrase(noun, words):
    phrase = " ".join(words + [noun])
    if noun in PLURAL:
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(label, attributes, rng):
    """One caption: a template around [article] [size] [brightness] [pattern]
    noun, each attribute said with some probability, in several words.
    `attributes`: the bins of tools/train_text_to_image.py's measure()."""
    words = []
    if attributes["size"] and rng.random() < 0.3:
        words.append(rng.choice(SIZE[attributes["size"]]))
    if rng.random() < 0.8:
        words.append(rng.choice(BRIGHTNESS[attributes["brightness"]]))
    if attributes["pattern"] and rng.random() < 0.3:
        words.append(rng.choice(PATTERN[attributes["pattern"]]))
    phrase = noun_phrase(rng.choice(NOUNS[label]), words)
    return rng.choice(TEMPLATES).format(phrase)


def every_phrase():
    words = [w for names in list(BRIGHTNESS.values()) + list(SIZE.values()) + list(PATTERN.values()) for w in names]
    return [t.format(noun_phrase(n, [])) for n in sum(NOUNS, []) for t in TEMPLATES] + words


def held_out_prompt(label, brightness, rng):
    """A prompt in a phrasing training never used; `brightness` None leaves it out."""
    words = [rng.choice(BRIGHTNESS[brightness])] if brightness else []
    return rng.choice(HELD_OUT_TEMPLATES).format(noun_phrase(rng.choice(NOUNS[label]), words))
