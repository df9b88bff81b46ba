# python_workload.py - the python3 workload of the program tests.
#
# Run by run_program.sh with PYTHONMALLOC=malloc, so every object below goes
# through the C allocator under test (pymalloc would otherwise serve the small
# ones itself).  It must be deterministic: only seeded randomness, sorted
# output, no addresses, times or hash-order-dependent iteration.  It prints a
# few counts and a digest of everything it built, so a corrupted byte anywhere
# shows up as a different line on stdout.
import hashlib
import json
import random
import re
import sys

SEED = 20240601


def make_words(rng, count):
    """Random lowercase words of 3..12 letters: many small str objects."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 12)))
            for _ in range(count)]


def word_histogram(words):
    """dict str->int, grown one key at a time (many dict resizes)."""
    hist = {}
    for word in words:
        hist[word[:4]] = hist.get(word[:4], 0) + 1
    return hist


def make_records(rng, words, count):
    """Nested dicts and lists: the shape that json round-trips below."""
    records = []
    for i in range(count):
        records.append({
            "id": i,
            "name": words[i % len(words)],
            "tags": sorted(set(rng.sample(words, rng.randint(0, 6)))),
            "score": rng.randint(-10**6, 10**6) / 7.0,
            "children": [{"k": j, "v": words[(i * j) % len(words)] * (j % 3)}
                         for j in range(rng.randint(0, 5))],
        })
    return records


def churn_strings(words, rounds):
    """Concatenation, split, join and regex: lots of short-lived buffers."""
    pattern = re.compile(r"([aeiou]+)([^aeiou]*)")
    total = 0
    text = ""
    for r in range(rounds):
        chunk = " ".join(words[r * 50:(r + 1) * 50])
        text = pattern.sub(lambda m: m.group(2) + m.group(1).upper(), chunk)
        total += len(text.split("E")) + len(text)
    return total, text


def main():
    rng = random.Random(SEED)
    digest = hashlib.sha256()

    words = make_words(rng, 60000)
    hist = word_histogram(words)
    top = sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    print("words", len(words), "prefixes", len(hist))
    print("top", top)
    digest.update(repr(top).encode())

    records = make_records(rng, words, 20000)
    blob = json.dumps(records, sort_keys=True)
    back = json.loads(blob)
    assert back == json.loads(json.dumps(back, sort_keys=True))
    print("json bytes", len(blob), "records", len(back))
    digest.update(blob.encode())

    back.sort(key=lambda rec: (len(rec["tags"]), rec["name"], rec["id"]))
    digest.update(",".join(str(rec["id"]) for rec in back).encode())

    big = [rng.getrandbits(64) for _ in range(200000)]
    big.sort()
    pairs = sorted(zip(big[::3], words * 4), key=lambda p: (p[1], p[0]))
    digest.update(repr(pairs[:1000]).encode())
    print("ints", len(big), "min", big[0], "max", big[-1])

    total, text = churn_strings(words, 1000)
    print("string churn", total, text[:40])
    digest.update(text.encode())

    print("digest", digest.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
