# python_workload.py - the python3 real-program workload of bench/run.
#
# Usage: python3 python_workload.py RECORDS
# bench/run runs it with PYTHONMALLOC=malloc, so that every object goes
# through the C allocator under test (pymalloc would otherwise serve the
# small ones itself and hide the allocator).  The work is an application's
# mix: many short strings, dicts grown key by key, lists of tuples, class
# instances, a JSON round trip and sorting.  Deterministic (seeded random,
# no addresses or hash-order iteration): the printed digest must be the same
# under every allocator.
import hashlib
import json
import random
import sys


class Record:
    __slots__ = ("key", "words", "score")

    def __init__(self, key, words, score):
        self.key = key
        self.words = words
        self.score = score


def make_records(rng, count):
    letters = "abcdefghijklmnopqrstuvwxyz"
    records = []
    for i in range(count):
        words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
                 for _ in range(rng.randint(1, 6))]
        records.append(Record("k%07d" % rng.randrange(10 ** 7), words, rng.random()))
    return records


def index_words(records):
    index = {}
    for r in records:
        for w in r.words:
            index.setdefault(w[:3], []).append(r.key)
    return index


def round_trip(records):
    doc = [{"key": r.key, "words": r.words, "score": round(r.score, 6)} for r in records]
    return json.loads(json.dumps(doc))


def main():
    count = int(sys.argv[1])
    rng = random.Random(20251125)
    digest = hashlib.sha256()
    records = make_records(rng, count)
    index = index_words(records)
    decoded = round_trip(records)
    ranked = sorted(decoded, key=lambda d: (-d["score"], d["key"]))
    pairs = sorted((k, len(v)) for k, v in index.items())
    digest.update(repr(pairs[:50]).encode())
    digest.update(repr([d["key"] for d in ranked[:50]]).encode())
    print("python records=%d digest=%s" % (count, digest.hexdigest()[:16]))


main()
