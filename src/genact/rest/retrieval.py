"""CLIP retrieval for REST (Algorithm 1, steps 3-4; Eqs. 5-6).

Neighbours: top-H videos by video-video cosine, exact, computed in row chunks so no
N x N matrix ever exists. Retrieval update: for video i the candidates are its own
captions plus all captions of its H neighbours (identical texts once, since texts
are ids into one table of distinct captions), scored by video-text cosine; the top
K are kept. Each chunk of videos scores against all distinct captions in one
matrix product (compute-bound, exact) and picks the candidates' scores from it.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


def _rows_per_chunk(columns: int, budget_bytes: int) -> int:
    return max(1, min(65536, budget_bytes // (4 * max(columns, 1))))


def video_neighbours(
    feats: torch.Tensor,
    h: int,
    device: torch.device | str = "cpu",
    out: np.ndarray | None = None,
    budget_bytes: int = 512 << 20,
    progress: bool = False,
) -> np.ndarray:
    """Top-h neighbours of every video by cosine (a video is its own first neighbour).

    feats: (N, D) L2-normalised (any float dtype; scored in float32).
    Returns int32 (N, h), most similar first; pass `out` (e.g. a np.memmap) to write
    to disk. Memory: one (chunk, N) score block within `budget_bytes`.
    """
    n = feats.shape[0]
    h = min(h, n)
    out = np.empty((n, h), np.int32) if out is None else out
    bank = feats.to(device=device, dtype=torch.float32)
    rows = _rows_per_chunk(n, budget_bytes)
    for s in tqdm(range(0, n, rows), desc="video neighbours", disable=not progress):
        block = bank[s : s + rows] @ bank.T
        # ties (e.g. duplicate videos) resolve to self first
        block[torch.arange(block.shape[0]), torch.arange(s, s + block.shape[0])] = float("inf")
        out[s : s + rows] = block.topk(h, dim=1).indices.to(torch.int32).cpu().numpy()
    return out


def pad_ragged(lists: list[list[int]], fill: int = -1) -> torch.Tensor:
    """Ragged lists of ids -> (len, max_len) int64 padded with `fill`."""
    width = max((len(x) for x in lists), default=0)
    out = torch.full((len(lists), max(width, 1)), fill, dtype=torch.long)
    for i, x in enumerate(lists):
        out[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
    return out


def retrieval_update(
    neighbours: np.ndarray | torch.Tensor,
    captions: torch.Tensor,
    video_feats: torch.Tensor,
    text_feats: torch.Tensor,
    k: int = 3,
    device: torch.device | str = "cpu",
    budget_bytes: int = 512 << 20,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 5-6: keep the K best-scoring captions among W_i and its neighbours' W_j.

    neighbours: (N, H) video ids (row i includes i itself, or W_i is added anyway);
    captions: (N, C) caption ids per video, -1 padded (W_i);
    video_feats (N, D), text_feats (M, D): L2-normalised CLIP features.
    Each chunk of videos is scored against all M texts in one matrix product
    (N * M dot products, compute-bound) and the candidates' scores are picked from
    it. Gathering only the candidates' features (N * H * C dot products) was 10x
    slower on a 2-core CPU at N = 20k (bound by memory traffic), so it is not used.
    Returns ids (N, K) int64 (-1 where fewer than K distinct candidates exist) and
    their cosines (N, K) float32 (-inf there), best first.
    """
    neighbours = neighbours.cpu().numpy() if isinstance(neighbours, torch.Tensor) else np.asarray(neighbours)
    n, m = captions.shape[0], text_feats.shape[0]
    per_video = captions.shape[1] * (neighbours.shape[1] + 1)  # candidates of one video
    texts = text_feats.to(device=device, dtype=torch.float32)
    videos = video_feats.to(dtype=torch.float32)
    caps = captions.to(device)
    out_ids = torch.full((n, k), -1, dtype=torch.long)
    out_scores = torch.full((n, k), float("-inf"), dtype=torch.float32)
    rows = _rows_per_chunk(m + 6 * per_video, budget_bytes)
    for s in tqdm(range(0, n, rows), desc="retrieval update", disable=not progress):
        idx = torch.arange(s, min(s + rows, n), device=device)
        nb = torch.from_numpy(np.asarray(neighbours[s : s + rows], dtype=np.int64)).to(device)
        cand = torch.cat([caps[idx], caps[nb].flatten(1)], dim=1)  # (b, C + H*C), -1 = none
        # identical caption ids count once: sort, then drop each repeat of the previous id
        cand, _ = cand.sort(dim=1)
        drop = cand < 0
        drop[:, 1:] |= cand[:, 1:] == cand[:, :-1]
        scores = (videos[s : s + rows].to(device) @ texts.T).gather(1, cand.clamp(min=0))  # (b, C + H*C)
        scores = scores.masked_fill(drop, float("-inf"))
        kk = min(k, scores.shape[1])
        top_scores, top_pos = scores.topk(kk, dim=1)
        top_ids = cand.gather(1, top_pos).masked_fill(top_scores == float("-inf"), -1)
        out_ids[s : s + rows, :kk] = top_ids.cpu()
        out_scores[s : s + rows, :kk] = top_scores.cpu()
    return out_ids, out_scores
