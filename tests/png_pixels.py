"""The pixels of the PNGs tiledraw writes, read with the standard library
only, for the tests that check images: 8-bit gray or RGB, non-interlaced, any
row filters."""
import zlib


def read_png(path):
    """(width, height, channels, pixels): the pixels as bytes, row by row,
    each pixel's channels interleaved."""
    with open(path, "rb") as f:
        return decode_png(f.read(), path)


def decode_png(data, path="PNG"):
    """read_png for bytes in memory."""
    pos, chunks = 8, {}
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        chunks.setdefault(kind, b"")
        chunks[kind] += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    width, height = int.from_bytes(chunks[b"IHDR"][:4], "big"), int.from_bytes(chunks[b"IHDR"][4:8], "big")
    if chunks[b"IHDR"][8] != 8 or chunks[b"IHDR"][12] != 0:
        raise ValueError(f"{path}: not an 8-bit non-interlaced PNG")
    channels = {0: 1, 2: 3}[chunks[b"IHDR"][9]]
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, channels, b"".join(rows)
