"""CLIP retrieval for REST (Algorithm 1, steps 3-4; Eqs. 5-6).

Neighbours: top-H videos by video-video cosine, exact, computed in row chunks so no
N x N matrix ever exists. Retrieval update: for video i the candidates are its own
captions plus all captions of its H neighbours (identical texts once, since texts
are ids into one table of distinct captions), scored by video-text cosine; the top
K are kept. Each chunk of videos scores against all distinct captions in one
matrix product (compute-bound, exact) and picks the candidates' scores from it.

Both take `rows`, a range of videos to do (default all): under torchrun each process
does one contiguous share against all N videos or M texts (see rest/stages.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genact.console import progress_bar


def _rows_per_chunk(columns: int, budget_bytes: int) -> int:
    return max(1, min(65536, budget_bytes // (4 * max(columns, 1))))


def video_neighbours(
    feats: torch.Tensor,
    h: int,
    device: torch.device | str = "cpu",
    out: np.ndarray | None = None,
    budget_bytes: int = 512 << 20,
    progress: bool = False,
    rows: range | None = None,
) -> np.ndarray:
    """Top-h neighbours of every video by cosine (a video is its own first neighbour).

    feats: (N, D) L2-normalised (any float dtype; scored in float32).
    Returns int32 (N, h), most similar first; pass `out` (e.g. a np.memmap) to write
    to disk. With `rows`, only those rows of `out` are filled. Memory: one (chunk, N)
    score block within `budget_bytes`.
    """
    n = feats.shape[0]
    h = min(h, n)
    rows = range(n) if rows is None else rows
    out = np.empty((n, h), np.int32) if out is None else out
    bank = feats.to(device=device, dtype=torch.float32)
    step = _rows_per_chunk(n, budget_bytes)
    for s in progress_bar(
        range(rows.start, rows.stop, step), desc="video neighbours", enabled=progress
    ):
        block = bank[s : min(s + step, rows.stop)] @ bank.T
        # ties (e.g. duplicate videos) resolve to self first
        block[torch.arange(block.shape[0]), torch.arange(s, s + block.shape[0])] = float("inf")
        out[s : s + block.shape[0]] = block.topk(h, dim=1).indices.to(torch.int32).cpu().numpy()
    return out


def import_faiss():
    """The faiss module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "rest.neighbour_index=faiss-ivf needs FAISS: pip install faiss-cpu (or genact[faiss])"
        ) from None
    return faiss


def approximate_neighbours(
    feats: torch.Tensor,
    h: int,
    nprobe: int = 64,
    out: np.ndarray | None = None,
    batch: int = 4096,
    seed: int = 0,
    progress: bool = False,
    rows: range | None = None,
) -> np.ndarray:
    """Approximate top-h neighbours from a FAISS inverted-file index (IndexIVFFlat,
    inner product, 4 sqrt(N) lists, `nprobe` of them searched per query).

    For users who trade exactness for time at large N; the recall@H it reaches is
    measured by `benchmarks/retrieval_scale.py --faiss`. Same contract as
    `video_neighbours`: int32 (N, h), a video first in its own row; where the probed
    lists hold fewer than h videos the row is padded with the video itself (its own
    captions, counted once). With `rows`, only those rows are searched (every process
    builds the same index from the same seed). Needs `pip install faiss-cpu` (genact[faiss]).
    """
    faiss = import_faiss()
    x = np.ascontiguousarray(feats.float().cpu().numpy())
    n, d = x.shape
    h = min(h, n)
    out = np.empty((n, h), np.int32) if out is None else out
    # FAISS wants >= 39 training points per list
    lists = max(1, min(int(4 * math.sqrt(n)), n // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(n, min(n, 256 * lists), replace=False)
    index.train(x[np.sort(sample)])
    index.add(x)
    index.nprobe = min(nprobe, lists)
    rows = range(n) if rows is None else rows
    for s in progress_bar(
        range(rows.start, rows.stop, batch), desc="video neighbours (FAISS)", enabled=progress
    ):
        _, found = index.search(x[s : min(s + batch, rows.stop)], h)
        for r, row in enumerate(found):
            i = s + r
            rest = [j for j in row.tolist() if j >= 0 and j != i]
            out[i] = ([i] + rest + [i] * h)[:h]
    return out


# bf16 keeps 8 significant bits: each input rounds with relative error <= 2**-8
BF16_UNIT = 2.0**-8


def retrieval_update(
    neighbours: np.ndarray | torch.Tensor,
    captions: torch.Tensor,
    video_feats: torch.Tensor,
    text_feats: torch.Tensor,
    k: int = 3,
    device: torch.device | str = "cpu",
    budget_bytes: int = 512 << 20,
    progress: bool = False,
    rows: range | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 5-6: keep the K best-scoring captions among W_i and its neighbours' W_j.

    neighbours: (N, H) video ids (row i includes i itself, or W_i is added anyway);
    captions: (N, C) caption ids per video, -1 padded (W_i);
    video_feats (N, D), text_feats (M, D): L2-normalised CLIP features.

    Exact, in two passes per chunk of videos. (1) One bf16 matrix product scores the
    chunk against all M texts (N * M dot products, compute-bound; bf16 runs about
    3x the float32 rate on AVX-512 / tensor cores) and the candidates' scores are
    picked from it. Rounding moves a bf16 score by at most eps = 4 * 2**-8 * |v| |t|
    (inputs and output each round once; float32 accumulation), so every candidate
    of the exact top K scores within 2 eps of the bf16 K-th best. (2) Those few
    candidates are rescored in float32 from the stored features and the top K taken.
    Gathering every candidate's features instead (N * H * C dot products) was 10x
    slower on a 2-core CPU at N = 20k (bound by memory traffic).
    Returns ids (N, K) int64 (-1 where fewer than K distinct candidates exist) and
    their float32 cosines (N, K) (-inf there), best first; with `rows`, only those
    videos' rows (len(rows), K).
    """
    neighbours = (
        neighbours.cpu().numpy() if isinstance(neighbours, torch.Tensor) else np.asarray(neighbours)
    )
    rows = range(captions.shape[0]) if rows is None else rows
    per_video = captions.shape[1] * (neighbours.shape[1] + 1)  # candidates of one video
    texts = text_feats.to(device)
    texts_bf16 = texts.to(torch.bfloat16)
    videos = video_feats.to(dtype=torch.float32)
    # no float32 copy of texts
    text_norm = torch.linalg.vector_norm(texts, dim=1, dtype=torch.float32).max()
    eps = 4 * BF16_UNIT * float(videos.norm(dim=1).max()) * float(text_norm)
    caps = captions.to(device)
    out_ids = torch.full((len(rows), k), -1, dtype=torch.long)
    out_scores = torch.full((len(rows), k), float("-inf"), dtype=torch.float32)
    # a bf16 score is half a float
    step = _rows_per_chunk(texts.shape[0] // 2 + 6 * per_video, budget_bytes)
    for s in progress_bar(
        range(rows.start, rows.stop, step), desc="retrieval update", enabled=progress
    ):
        e = min(s + step, rows.stop)
        idx = torch.arange(s, e, device=device)
        nb = torch.from_numpy(np.asarray(neighbours[s:e], dtype=np.int64)).to(device)
        cand = torch.cat([caps[idx], caps[nb].flatten(1)], dim=1)  # (b, C + H*C), -1 = none
        top_ids, top_scores = _exact_top_k(videos[s:e].to(device), cand, texts, texts_bf16, k, eps)
        out_ids[s - rows.start : e - rows.start, : top_ids.shape[1]] = top_ids.cpu()
        out_scores[s - rows.start : e - rows.start, : top_ids.shape[1]] = top_scores.cpu()
    return out_ids, out_scores


def _exact_top_k(
    v: torch.Tensor,
    cand: torch.Tensor,
    texts: torch.Tensor,
    texts_bf16: torch.Tensor,
    k: int,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two passes of `retrieval_update` for a chunk: videos v (b, D), candidate
    text ids cand (b, c) (-1 = none) -> the top-k ids (b, k') and float32 scores, k' =
    min(k, c), -1 / -inf where fewer distinct candidates exist."""
    # identical caption ids count once: sort, then drop each repeat of the previous id
    cand, _ = cand.sort(dim=1)
    drop = cand < 0
    drop[:, 1:] |= cand[:, 1:] == cand[:, :-1]
    rough = (v.to(torch.bfloat16) @ texts_bf16.T).gather(1, cand.clamp(min=0)).float()  # (b, c)
    rough = rough.masked_fill(drop, float("-inf"))
    kk = min(k, rough.shape[1])
    kth = rough.topk(kk, dim=1).values[:, -1:]
    close = (rough >= kth - 2 * eps) & ~drop  # holds the exact top K
    width = max(int(close.sum(1).max()), kk)
    pos = rough.masked_fill(~close, float("-inf")).topk(width, dim=1).indices  # (b, width)
    ids, valid = cand.gather(1, pos), close.gather(1, pos)
    exact = torch.einsum("bd,bwd->bw", v, texts[ids.clamp(min=0)].float()).masked_fill(
        ~valid, float("-inf")
    )
    top_scores, top_pos = exact.topk(kk, dim=1)
    return ids.gather(1, top_pos).masked_fill(top_scores == float("-inf"), -1), top_scores
