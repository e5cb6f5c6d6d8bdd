"""REST retrieval (Eqs. 5-6) against a plain-Python brute force on random data."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genact.rest.retrieval import retrieval_update, video_neighbours
from genact.training.bank import pad_ragged


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
    assert video_neighbours(feats, 100).shape == (57, 57)  # H beyond N means everyone


@pytest.mark.parametrize("k,budget", [(3, 1 << 30), (3, 2048), (7, 1 << 30), (40, 4096)])
def test_retrieval_update_equals_brute_force(k, budget):
    rng = np.random.default_rng(1)
    n, m, h = 40, 30, 5
    video_feats = F.normalize(torch.from_numpy(rng.normal(size=(n, 12))).float(), dim=1)
    text_feats = F.normalize(torch.from_numpy(rng.normal(size=(m, 12))).float(), dim=1)
    # ragged caption lists that share texts across videos (30 distinct texts for 40 videos)
    captions = [sorted(set(rng.integers(0, m, rng.integers(1, 5)).tolist())) for _ in range(n)]
    neighbours = video_neighbours(video_feats, h)
    ids, scores = retrieval_update(
        neighbours, pad_ragged(captions), video_feats, text_feats, k, budget_bytes=budget
    )
    want_ids, want_scores = brute_update(neighbours.tolist(), captions, video_feats, text_feats, k)
    for i in range(n):
        got = [c for c in ids[i].tolist() if c >= 0]
        assert got == want_ids[i]
        assert np.allclose(scores[i, : len(got)].numpy(), want_scores[i], atol=1e-6)
        assert (scores[i, len(got) :] == float("-inf")).all() and (ids[i, len(got) :] == -1).all()
        assert len(got) == len(set(got))  # a text shared by several neighbours counts once


def test_blocks_of_rows_tile_the_whole_result():
    """What each torchrun process computes (its block of videos) joins up to the full answer."""
    from genact.distributed import Dist, block

    g = torch.Generator().manual_seed(3)
    video_feats = F.normalize(torch.randn(23, 8, generator=g), dim=1)
    text_feats = F.normalize(torch.randn(17, 8, generator=g), dim=1)
    captions = pad_ragged([torch.randint(0, 17, (3,), generator=g).tolist() for _ in range(23)])
    full_nb = video_neighbours(video_feats, 4)
    full_ids, full_scores = retrieval_update(full_nb, captions, video_feats, text_feats, 3)
    blocks = [block(23, Dist(rank=r, world=3)) for r in range(3)]
    assert [i for b in blocks for i in b] == list(range(23))
    nb = np.full((23, 4), -7, np.int32)
    for b in blocks:
        video_neighbours(video_feats, 4, out=nb, rows=b, budget_bytes=256)
    assert (nb == full_nb).all()
    parts = [
        retrieval_update(full_nb, captions, video_feats, text_feats, 3, rows=b, budget_bytes=512)
        for b in blocks
    ]
    assert torch.equal(torch.cat([p[0] for p in parts]), full_ids)
    assert torch.equal(torch.cat([p[1] for p in parts]), full_scores)


def test_h_equal_one_keeps_a_videos_own_best_captions():
    video_feats = F.normalize(torch.randn(4, 6), dim=1)
    text_feats = F.normalize(torch.randn(10, 6), dim=1)
    captions = pad_ragged([[0, 1, 2, 3], [4, 5], [6], [7, 8, 9]])
    ids, _ = retrieval_update(
        video_neighbours(video_feats, 1), captions, video_feats, text_feats, k=2
    )
    for i, own in enumerate([[0, 1, 2, 3], [4, 5], [6], [7, 8, 9]]):
        best = sorted(own, key=lambda c: -float(video_feats[i] @ text_feats[c]))[
            :2
        ]  # the best K, in order
        assert [c for c in ids[i].tolist() if c >= 0] == best


def test_retrieval_update_is_exact_where_bf16_cannot_tell_captions_apart():
    """60 captions whose cosines with each video differ by ~1e-4, far below bf16's
    resolution (~4e-3): the float32 rescoring must still rank them exactly."""
    g = torch.Generator().manual_seed(3)
    video_feats = F.normalize(torch.randn(6, 64, generator=g), dim=1)
    base = F.normalize(video_feats.mean(0, keepdim=True), dim=1)
    text_feats = F.normalize(base + 2e-3 * torch.randn(60, 64, generator=g), dim=1)
    captions = [list(range(10 * i, 10 * i + 10)) for i in range(6)]
    neighbours = video_neighbours(video_feats, 6)
    ids, scores = retrieval_update(neighbours, pad_ragged(captions), video_feats, text_feats, 5)
    want_ids, want_scores = brute_update(neighbours.tolist(), captions, video_feats, text_feats, 5)
    rough = (video_feats.bfloat16() @ text_feats.bfloat16().T).float()
    assert any(len(set(r.tolist())) < 60 for r in rough)  # bf16 alone ties many of them
    assert ids.tolist() == want_ids
    assert np.allclose(scores.numpy(), np.array(want_scores), atol=1e-6)


def clustered(n, d, clusters, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(clusters, d, generator=g), dim=1)
    return F.normalize(
        centres[torch.randint(clusters, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g),
        dim=1,
    )


def test_faiss_neighbours_keep_the_contract_and_are_exact_when_every_list_is_searched():
    from genact.rest.retrieval import approximate_neighbours

    feats = clustered(2000, 16, 20)
    exact = video_neighbours(feats, 50)
    full = approximate_neighbours(feats, 50, nprobe=10_000)  # all lists searched: exhaustive
    assert (
        full.dtype == np.int32
        and full.shape == (2000, 50)
        and (full[:, 0] == np.arange(2000)).all()
    )
    assert all(set(a) == set(b) for a, b in zip(full.tolist(), exact.tolist()))
    few = approximate_neighbours(feats, 50, nprobe=1)
    assert (few[:, 0] == np.arange(2000)).all() and few.min() >= 0 and few.max() < 2000
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(few.tolist(), exact.tolist())])
    # one list of ~22 is searched: approximate, yet far above chance (50 / 2000)
    assert 0.3 < recall < 1.0
    # two torchrun processes, each building the index and searching its rows
    halves = np.full_like(few, -1)
    for rows in (range(0, 1100), range(1100, 2000)):
        approximate_neighbours(feats, 50, nprobe=1, out=halves, rows=rows)
    assert (halves == few).all()


def test_unknown_neighbour_index_is_a_config_error():
    from genact.config import ConfigError, RestConfig, load_config

    with pytest.raises(ConfigError, match="neighbour_index"):
        load_config(RestConfig, None, ["rest.neighbour_index=hnsw"])
