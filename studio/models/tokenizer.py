"""A CLIP BPE tokenizer trained offline on a caption corpus.

Built as ``CLIPTokenizer(vocab=dict, merges=list)`` from the byte-level alphabet plus
merges learned here by a small deterministic BPE trainer. transformers 5 silently yields a
2-token vocabulary for ``CLIPTokenizer(vocab_file=..., merges_file=...)`` (DESIGN.md);
tests assert the vocabulary size of what this builds.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=1)
def byte_alphabet() -> tuple[str, ...]:
    """GPT-2/CLIP's reversible byte -> printable-unicode map, as 256 characters in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return tuple(out[b] for b in range(256))


def _base_vocab() -> dict[str, int]:
    chars = byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab[BOS], vocab[EOS] = 512, 513
    return vocab


def learn_merges(words: Counter, num_merges: int) -> list[tuple[str, str]]:
    """Byte-pair encoding (Sennrich et al. 2016, Algorithm 1) with end-of-word ``</w>`` symbols.

    Ties between equally frequent pairs go to the lexicographically smallest pair, so the
    result is deterministic (the ``tokenizers`` trainer breaks ties in hash order, which
    would give a different vocabulary, and so a mismatched text encoder, on every run).
    """
    seqs = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in words}
    merges = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                pairs[pair] += words[w]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        joined = best[0] + best[1]
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = tuple(out)
    return merges


def train_clip_tokenizer(corpus: list[str], vocab_size: int = 1024, model_max_length: int = 77) -> CLIPTokenizer:
    """Learn BPE merges on ``corpus``; every byte stays encodable, so no text is ever unknown.

    The vocabulary is the 512 byte tokens (plain and end-of-word), BOS/EOS, then one token
    per learned merge, so ``len(tokenizer) <= vocab_size``. Text is normalised and split
    into words by CLIP's own normaliser and pre-tokeniser before merges are counted.
    """
    base = _base_vocab()
    if vocab_size < len(base):
        raise ValueError(f"vocab_size must be at least {len(base)} (the byte alphabet)")
    backend = CLIPTokenizer(vocab=base, merges=[], model_max_length=model_max_length).backend_tokenizer
    words: Counter = Counter()
    for text in corpus:
        norm = backend.normalizer.normalize_str(text) if backend.normalizer else text
        words.update(piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(norm))
    merges = learn_merges(words, vocab_size - len(base))
    vocab = dict(base)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
