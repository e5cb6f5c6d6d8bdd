"""REST retrieval (Eqs. 5-6) against a plain-Python brute force on random data."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genact.rest.retrieval import pad_ragged, retrieval_update, video_neighbours


def brute_neighbours(feats, h):
    sims = (feats @ feats.T).numpy()
    out = []
    for i in range(len(sims)):
        order = sorted(range(len(sims)), key=lambda j: (j != i, -sims[i, j]))
        out.append(order[:h])
    return out


def brute_update(neighbours, captions, video_feats, text_feats, k):
    ids, scores = [], []
    for i, nbrs in enumerate(neighbours):
        pool = set(captions[i])
        for j in nbrs:
            pool |= set(captions[j])
        ranked = sorted(pool, key=lambda c: -float(video_feats[i] @ text_feats[c]))[:k]
        ids.append(ranked)
        scores.append([float(video_feats[i] @ text_feats[c]) for c in ranked])
    return ids, scores


@pytest.mark.parametrize("budget", [1 << 30, 4096])  # one chunk, and many tiny chunks
def test_neighbours_are_exact_top_h(budget):
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(57, 8, generator=g), dim=1)
    got = video_neighbours(feats, 6, budget_bytes=budget)
    assert got.dtype == np.int32 and got.shape == (57, 6)
    assert got.tolist() == brute_neighbours(feats, 6)
    assert (video_neighbours(feats, 100) .shape == (57, 57))  # H beyond N means everyone


@pytest.mark.parametrize("k,budget", [(3, 1 << 30), (3, 2048), (7, 1 << 30), (40, 4096)])
def test_retrieval_update_equals_brute_force(k, budget):
    rng = np.random.default_rng(1)
    n, m, h = 40, 30, 5
    video_feats = F.normalize(torch.from_numpy(rng.normal(size=(n, 12))).float(), dim=1)
    text_feats = F.normalize(torch.from_numpy(rng.normal(size=(m, 12))).float(), dim=1)
    # ragged caption lists that share texts across videos (30 distinct texts for 40 videos)
    captions = [sorted(set(rng.integers(0, m, rng.integers(1, 5)).tolist())) for _ in range(n)]
    neighbours = video_neighbours(video_feats, h)
    ids, scores = retrieval_update(neighbours, pad_ragged(captions), video_feats, text_feats, k, budget_bytes=budget)
    want_ids, want_scores = brute_update(neighbours.tolist(), captions, video_feats, text_feats, k)
    for i in range(n):
        got = [c for c in ids[i].tolist() if c >= 0]
        assert got == want_ids[i]
        assert np.allclose(scores[i, : len(got)].numpy(), want_scores[i], atol=1e-6)
        assert (scores[i, len(got):] == float("-inf")).all() and (ids[i, len(got):] == -1).all()
        assert len(got) == len(set(got))  # a text shared by several neighbours counts once


def test_h_equal_one_keeps_a_videos_own_best_captions():
    video_feats = F.normalize(torch.randn(4, 6), dim=1)
    text_feats = F.normalize(torch.randn(10, 6), dim=1)
    captions = pad_ragged([[0, 1, 2, 3], [4, 5], [6], [7, 8, 9]])
    ids, _ = retrieval_update(video_neighbours(video_feats, 1), captions, video_feats, text_feats, k=2)
    for i, own in enumerate([[0, 1, 2, 3], [4, 5], [6], [7, 8, 9]]):
        assert set(c for c in ids[i].tolist() if c >= 0) <= set(own)
