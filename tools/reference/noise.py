"""tiledraw's documented noise generator, for the reference tests: xoshiro256**
seeded through splitmix64, Box-Muller in float64, rounded to float32. A stream
is read by successive fill(count) calls; each fill makes (cos, sin) pairs and,
for an odd count, drops the last sin, so the next fill starts a fresh pair.
Image i of a batch has its own stream, seeded seed + i."""
import math

import numpy as np

_MASK = (1 << 64) - 1


def _rotl(v, k):
    return ((v << k) | (v >> (64 - k))) & _MASK


class NormalNoise:
    def __init__(self, seed):
        self.state, x = [], seed & _MASK
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & _MASK
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            self.state.append(z ^ (z >> 31))

    def next_u64(self):
        s = self.state
        result = (_rotl((s[1] * 5) & _MASK, 7) * 9) & _MASK
        t = (s[1] << 17) & _MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def fill(self, count):
        out = []
        while len(out) < count:
            u1 = ((self.next_u64() >> 11) + 1.0) * 2.0 ** -53  # in (0, 1]: the log stays finite
            u2 = (self.next_u64() >> 11) * 2.0 ** -53
            radius = math.sqrt(-2.0 * math.log(u1))
            out += [radius * math.cos(2 * math.pi * u2), radius * math.sin(2 * math.pi * u2)]
        return np.array(out[:count], dtype=np.float32)


def normal_noise(seed, count):
    """One fill of `count` values from a fresh stream."""
    return NormalNoise(seed).fill(count)


class BatchNoise:
    """One stream per image; each draw is one fill of every image's stream."""

    def __init__(self, seed, images, shape):
        self.streams = [NormalNoise(seed + i) for i in range(images)]
        self.shape = tuple(shape)

    def draw(self):
        count = int(np.prod(self.shape))
        return np.stack([s.fill(count).reshape(self.shape) for s in self.streams])
