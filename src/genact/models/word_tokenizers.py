"""Tokenizers over a fixed list of whole words, built in memory: BERT WordPiece for
BLIP (with its [DEC] BOS) and CLIP's byte-level BPE with one merge path per word. The
miniature world ships them; benchmarks use them for random-weight models."""

from __future__ import annotations

from pathlib import Path

from genact.models.clip import bytes_to_unicode


def blip_tokenizer(words: list[str], directory: Path | None = None):
    """WordPiece over whole `words` (+ BLIP's [DEC] BOS); its vocab.txt is written to
    `directory` when one is given."""
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + words
    if directory is None:
        tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    else:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tok = BertTokenizer(vocab=str(directory / "vocab.txt"))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    return tok


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: merge the best-ranked adjacent pair until none applies."""
    while len(pieces) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2 :]
    return pieces


def clip_tokenizer(words: list[str]):
    """CLIP's byte-level BPE with merges chosen so that every world word is one token."""
    from transformers import CLIPTokenizer

    symbols = list(bytes_to_unicode().values())
    ranks: dict[tuple[str, str], int] = {}
    for w in words:
        pieces = _bpe(list(w[:-1]) + [w[-1] + "</w>"], ranks)
        while len(pieces) > 1:  # add the merge that the word still needs, last in rank
            ranks[(pieces[0], pieces[1])] = len(ranks)
            pieces = _bpe(pieces, ranks)
    merges = sorted(ranks, key=ranks.get)
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(dict.fromkeys(tokens))}, merges=merges)
