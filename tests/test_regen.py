"""ReGen: rewards against hand computations, the policy-gradient sign, zero weights,
kill-and-resume, and `genact eval` on a ReGen model."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from genact.config import OptimConfig, RegenConfig, RegenStepsConfig, RunConfig, load_config
from genact.data import SkipReport, VideoItem, make_loader, read_video, write_video
from genact.distributed import Dist
from genact.inference.processing import blip_transform
from genact.io import read_json_lines
from genact.models import FrozenClip, VideoBlip, class_embeddings
from genact.regen.rewards import (
    GrammarScorer,
    advantages,
    clip_reward,
    cls_reward,
    standardise,
    text_stats,
)
from genact.regen.rl import RegenTrainer, Rewards
from genact.regen.run import run_regen
from genact.testing import blip_tokenizer, coloured_frames
from genact.training.metrics import Metrics
from genact.training.rundir import RunDir
from helpers import free_port

pytestmark = pytest.mark.slow  # end to end: `make test-fast` leaves these out

CLASSES = ["swimming", "playing guitar", "riding a bike"]


def test_class_and_clip_rewards_equal_hand_computation():
    t = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8]]), dim=1)
    w = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]), dim=1)
    y = torch.tensor([0, 1])
    tau = 0.5
    for n in range(2):
        logits = [float(t[n] @ w[c]) / tau for c in range(3)]
        want = logits[y[n]] - math.log(sum(math.exp(v) for v in logits))
        assert float(cls_reward(t, w, y, "ce", tau)[n]) == pytest.approx(want, abs=1e-6)
    assert cls_reward(t, w, y, "cos").tolist() == pytest.approx([1.0, 0.8])
    assert cls_reward(t, w, y, "l2").tolist() == pytest.approx([0.0, -math.sqrt(0.6**2 + 0.2**2)])
    v = F.normalize(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), dim=1)
    assert clip_reward(t, v).tolist() == pytest.approx([0.0, 0.8])
    with pytest.raises(ValueError, match="cls_form"):
        cls_reward(t, w, y, "hinge")


def test_advantages_baselines_and_stats():
    r = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 6.0])  # 2 clips x 3 samples
    assert advantages(r, 3).tolist() == pytest.approx(
        [1 - 2.5, 2 - 2.0, 3 - 1.5, 0 - 3.0, 0 - 3.0, 6 - 0.0]
    )
    assert advantages(r, 3, torch.tensor([2.0, 1.0])).tolist() == pytest.approx(
        [-1, 0, 1, -1, -1, 5]
    )
    s = standardise(torch.tensor([1.0, 3.0]))
    assert s.tolist() == pytest.approx([-1.0, 1.0]) and standardise(torch.ones(3)).tolist() == [
        0,
        0,
        0,
    ]
    assert text_stats(["a b", "a b", "c"]) == {
        "caption_words": pytest.approx(5 / 3),
        "distinct_ratio": pytest.approx(2 / 3),
    }


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory):
    """A tiny BERT masked LM and a tiny GPT-2, saved and loaded back like hub models."""
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("lms")
    tok = blip_tokenizer()
    torch.manual_seed(0)
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok),
            n_embd=32,
            n_layer=2,
            n_head=2,
            n_positions=64,
            bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id,
        )
    ).save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")
    return root


TEXTS = ["a man is playing a guitar", "someone swims", "dog"]


def test_mlm_pseudo_log_likelihood_equals_the_one_mask_at_a_time_loop(tiny_lms):
    scorer = GrammarScorer.from_pretrained(tiny_lms / "bert", "mlm")
    got = scorer(TEXTS + [""], batch_size=5)  # several forward batches
    tok, model = scorer.tokenizer, scorer.model
    for n, text in enumerate(TEXTS):
        ids = tok(text, return_tensors="pt").input_ids
        total = 0.0
        for p in range(1, ids.shape[1] - 1):
            masked = ids.clone()
            masked[0, p] = tok.mask_token_id
            with torch.no_grad():
                total += float(model(input_ids=masked).logits[0, p].log_softmax(-1)[ids[0, p]])
        assert float(got[n]) == pytest.approx(total / (ids.shape[1] - 2), abs=1e-4)
    assert float(got[3]) == 0.0


def test_causal_mean_log_likelihood_equals_a_token_loop(tiny_lms):
    scorer = GrammarScorer.from_pretrained(tiny_lms / "gpt2", "causal")
    got = scorer(TEXTS)
    tok, model = scorer.tokenizer, scorer.model
    for n, text in enumerate(TEXTS):
        # the model's BOS first
        ids = [tok.cls_token_id] + tok(text, add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
        want = np.mean([float(logp[i - 1, ids[i]]) for i in range(1, len(ids))])
        assert float(got[n]) == pytest.approx(want, abs=1e-4)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_blip_dir, tiny_clip_dir):
    """8 coloured videos, every one labelled `swimming` (a fixed target class)."""
    root = tmp_path_factory.mktemp("regen")
    rng = np.random.default_rng(0)
    for i in range(8):
        write_video(
            root / "videos" / f"v{i}.mp4", coloured_frames(rng, (8, 32, 32), i % 3, 150, noise=70)
        )
    (root / "train.txt").write_text("".join(f"v{i}.mp4,swimming\n" for i in range(8)))
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    settings = [
        f"data.root={root / 'videos'}",
        "data.format=list",
        f"data.list={root / 'train.txt'}",
        f"data.classes={root / 'classes.txt'}",
        f"model.blip={tiny_blip_dir}",
        f"model.clip={tiny_clip_dir}",
        "data.frames=2",
        "data.num_workers=0",
        "optim.global_batch=8",
        "optim.batch_size=4",
        "model.use_adapters=false",
        "regen.samples=4",
        "regen.top_k=20",
        "regen.max_new_tokens=5",
        "run.progress=false",
        "run.log_every=1",
    ]
    return root, settings


def regen(world, name, *extra):
    root, settings = world
    return run_regen(load_config(RegenConfig, None, [*settings, f"run.dir={root / name}", *extra]))


def cls_outcome(model_dir, world, tiny_clip_dir):
    """Mean CLS-R of captions sampled (fixed seed) for the videos, and the share
    classified as the target class."""
    model = VideoBlip.from_pretrained(model_dir, num_frames=2).eval()
    clip = FrozenClip.from_pretrained(tiny_clip_dir)
    pixels = torch.stack(
        [blip_transform(model)(read_video(world[0] / "videos" / f"v{i}.mp4", 2)) for i in range(8)]
    )
    torch.manual_seed(123)
    caps = model.generate(
        pixels, do_sample=True, num_return_sequences=8, top_k=20, max_new_tokens=5
    )
    emb = clip.encode_texts(caps)
    w = class_embeddings(clip, CLASSES)
    r = cls_reward(
        emb,
        w,
        torch.zeros(len(caps), dtype=torch.long),
        "ce",
        1 / float(clip.model.logit_scale.exp()),
    )
    return float(r.mean()), float(((emb @ w.T).argmax(1) == 0).float().mean())


def test_policy_gradient_raises_the_class_reward(world, tiny_blip_dir, tiny_clip_dir):
    final = regen(
        world,
        "cls",
        "optim.epochs=30",
        "optim.lr=1e-3",
        "optim.min_lr=1e-3",
        "regen.w_clip=0",
        "regen.w_grammar=0",
    )
    r0, share0 = cls_outcome(tiny_blip_dir, world, tiny_clip_dir)
    r1, share1 = cls_outcome(final, world, tiny_clip_dir)
    assert r1 > r0 + 0.1 and share1 > share0, (r0, r1, share0, share1)
    rows = read_json_lines(RunDir(world[0] / "cls").metrics)
    assert {"reward", "reward_cls", "advantage_std", "caption_words", "distinct_ratio"} <= set(
        rows[0]
    )
    assert "reward_clip" not in rows[0]  # weight 0: not computed
    assert np.mean([r["reward_cls"] for r in rows[-5:]]) > np.mean(
        [r["reward_cls"] for r in rows[:5]]
    )


def test_each_sampled_caption_is_rewarded_against_its_own_video(
    world, tiny_blip_dir, tiny_clip_dir, tmp_path
):
    """Mixed labels and distinct video features: sample j of clip b is scored with
    clip b's class (CLS-R) and clip b's CLIP feature (CLIP-R), by hand."""
    items = [VideoItem(str(world[0] / "videos" / f"v{i}.mp4"), label=i % 3) for i in range(4)]
    clip = FrozenClip.from_pretrained(tiny_clip_dir)
    feats = F.normalize(torch.randn(4, clip.dim, generator=torch.Generator().manual_seed(5)), dim=1)
    labels = torch.tensor([it.label for it in items])
    rc = RegenStepsConfig(samples=3, top_k=20, max_new_tokens=5, w_grammar=0)
    class_emb = class_embeddings(clip, CLASSES)
    rewards, calls = Rewards(rc, clip, class_emb, labels, feats), []

    def spy(captions, videos):
        out = rewards(captions, videos)
        calls.append((captions, out[1], out[2]))
        return out

    model = VideoBlip.from_pretrained(tiny_blip_dir, num_frames=2, use_adapters=False)
    trainer = RegenTrainer(
        model,
        items,
        [],
        OptimConfig(epochs=1, global_batch=4, batch_size=4),
        RunConfig(dir=str(tmp_path), progress=False, tensorboard=False),
        Dist(),
        Metrics(tmp_path, enabled=False),
        SkipReport(),
        rewards=spy,
        regen=rc,
    )
    batch = next(iter(make_loader(trainer.dataset, 4)))
    trainer._micro_step(batch, 0)
    ((captions, parts, _),) = calls
    clips = batch["index"].tolist()
    assert len(captions) == 3 * len(clips) == 12 and sorted(set(labels[clips].tolist())) == [
        0,
        1,
        2,
    ]
    emb = clip.text_features(captions)
    for j in range(len(captions)):
        v = clips[j // 3]  # generate returns each clip's samples together
        assert float(parts["clip"][j]) == pytest.approx(float(emb[j] @ feats[v]), abs=1e-4)
        want = cls_reward(emb[j : j + 1], class_emb, labels[v : v + 1], "ce", rewards.tau)
        assert float(parts["cls"][j]) == pytest.approx(float(want[0]), abs=1e-4)
    right = calls[0][2]  # and whether CLIP-TAM puts each sample in its own clip's class
    expected = (emb @ class_emb.T).argmax(1) == labels[torch.tensor(clips).repeat_interleave(3)]
    assert right.tolist() == expected.tolist()


def test_zero_weights_change_nothing(world, tiny_blip_dir):
    final = regen(
        world,
        "zero",
        "optim.epochs=3",
        "optim.lr=1e-3",
        "optim.weight_decay=0",
        "regen.w_cls=0",
        "regen.w_clip=0",
        "regen.w_grammar=0",
    )
    a, b = load_file(tiny_blip_dir / "model.safetensors"), load_file(final / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_equals_uninterrupted_and_eval_runs_on_the_result(world, tiny_lms, tiny_clip_dir):
    extra = [
        "optim.epochs=3",
        "optim.lr=1e-3",
        f"regen.grammar_model={tiny_lms / 'bert'}",
        "regen.baseline=greedy",
    ]
    full = regen(world, "full", *extra)
    assert regen(world, "stopped", *extra, "run.stop_at_step=2") is None
    resumed = regen(world, "stopped", *extra, "run.resume=auto")
    for name in ("model.safetensors",):
        a, b = load_file(full / name), load_file(resumed / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    rows = read_json_lines(RunDir(world[0] / "full").metrics)
    assert {"reward_cls", "reward_clip", "reward_grammar"} <= set(rows[0])
    assert VideoBlip.saved_settings(full)["trained_by"] == "regen"
    summary = (RunDir(world[0] / "full").summary).read_text()  # ReGen's own values, epoch by epoch
    assert (
        "| epoch | loss |" in summary
        and "reward_cls_std" in summary
        and "| reward_grammar |" in summary
    )

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "genact",
            "eval",
            "--protocol",
            "list",
            "--data-root",
            world[0] / "videos",
            "--splits",
            world[0] / "train.txt",
            "--classes",
            world[0] / "classes.txt",
            "--model",
            full,
            "--clip",
            tiny_clip_dir,
            "--cache-dir",
            world[0] / "cache",
            "--out",
            world[0] / "eval",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    res = RunDir(world[0] / "eval").read_results()
    assert res["splits"]["train"]["num_videos"] == 8


def settings_blip(settings):
    return Path(next(s for s in settings if s.startswith("model.blip=")).split("=", 1)[1])


def test_torchrun_with_the_lm_term(world):
    """2 processes (gloo), LM loss on REST pseudo-captions beside the policy gradient:
    the same weights, samples and rewards as one process."""
    from genact.training.bank import CaptionBank

    root, settings = world
    bank = CaptionBank([str(root / "videos" / f"v{i}.mp4") for i in range(8)])
    for i in range(8):
        bank.add(i, "a person is swimming", 0, "init")
        bank.add(i, f"a video number {i}", 1, "generated")
    bank.save(root / "bank.jsonl")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "genact",
        "regen",
        *settings,
        f"run.dir={root / 'ddp'}",
        "optim.epochs=2",
        "optim.lr=1e-3",
        "regen.w_grammar=0",
        "regen.lm_weight=0.5",
        f"regen.lm_captions={root / 'bank.jsonl'}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_json_lines(RunDir(root / "ddp").metrics)
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    # the same run in one process
    one = regen(
        world,
        "one",
        "optim.epochs=2",
        "optim.lr=1e-3",
        "regen.w_grammar=0",
        "regen.lm_weight=0.5",
        f"regen.lm_captions={root / 'bank.jsonl'}",
    )
    a, b = (
        load_file(one / "model.safetensors"),
        load_file(RunDir(root / "ddp").final / "model.safetensors"),
    )
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not all(
        torch.equal(a[k], load_file(settings_blip(settings) / "model.safetensors")[k]) for k in a
    )
    ref = read_json_lines(RunDir(root / "one").metrics)
    for x, y in zip(rows, ref):  # same samples, same rewards
        assert x["reward"] == pytest.approx(y["reward"], abs=1e-4) and x["loss"] == pytest.approx(
            y["loss"], abs=1e-4
        )
    assert sorted(p.name for p in (RunDir(root / "ddp").video_features).iterdir()) == [
        "rank0",
        "rank1",
    ]
    VideoBlip.from_pretrained(RunDir(root / "ddp").final)
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "genact",
            "regen",
            *settings,
            f"run.dir={root / 'nolm'}",
            "regen.lm_weight=0.5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "needs regen.lm_captions" in missing.stderr
