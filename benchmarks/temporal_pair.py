"""Can a video model of the miniature world tell a clip from its time reversal?

    python benchmarks/temporal_pair.py --out bench/temporal_pair.json

Clips of the order-dependent pair (`render.ORDER_VERBS`: a falling clip is a rising
clip played backwards, frame for frame; 8 frames, all of them seen, T = 8) of the
six objects in the four scenes. The shipped captioner is fine-tuned on them with the
correct captions ("rising ball", "falling ball": the best case, better than any
pseudo-caption REST could pick) through genact's own supervised training, with and
without temporal adapters and at several learning rates and lengths, then captions
held-out clips. Printed per setting: the share of test clips whose caption names
the right direction, of time-reversed test pairs that get different captions, and
how far apart the memories of a clip and its reversal are (relative to two clips').
Also printed: how order-blind REST's teachers are (the world's CLIP: cosine between
a clip's video feature and its reversal's; the frame captioner: the same frames).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from genact.config import Decoding, SupervisedConfig, load_config
from genact.data import SkipReport, VideoItem, write_video
from genact.inference.captions import Captioner, eval_batches
from genact.inference.features import encode_videos
from genact.models.clip import FrozenClip
from genact.models.video_blip import VideoBlip
from genact.models.word_tokenizers import blip_tokenizer
from genact.training.supervised import train_on_class_names
from genact.world.demo_runs import foundation_models
from genact.world.pretrain import CAPTION_PROMPT
from genact.world.render import OBJECTS, ORDER_VERBS, SCENES, ClipSpec, render_clip

FRAMES = 8


def clips(root: Path, per_pair: int, seed: int) -> list[tuple[VideoItem, VideoItem]]:
    """(rising, falling) items of the same spec: each pair is one clip and its reversal."""
    pairs, names = [], class_names()
    for o, obj in enumerate(OBJECTS):
        for k in range(per_pair):
            scene = list(SCENES)[k % len(SCENES)]
            pair = []
            for verb in ORDER_VERBS:
                spec = ClipSpec(verb, obj, scene, seed * 100_000 + o * 1000 + k)
                path = root / f"{verb}_{obj}_{seed}_{k:03d}.mp4"
                write_video(path, render_clip(spec, FRAMES))
                pair.append(VideoItem(str(path), names.index(f"{verb} {obj}")))
            pairs.append(tuple(pair))
    return pairs


def class_names() -> list[str]:
    return [f"{v} {o}" for o in OBJECTS for v in ORDER_VERBS]


def direction_scores(
    captions: dict[int, str], pairs: list[tuple[VideoItem, VideoItem]]
) -> dict[str, float]:
    """Share of clips whose caption names the right direction word, and of pairs told apart."""
    right = named = apart = 0
    for j, (up, down) in enumerate(pairs):
        for item, cap in ((up, captions.get(2 * j, "")), (down, captions.get(2 * j + 1, ""))):
            said = [v for v in ORDER_VERBS if v in cap.split()]
            named += bool(said)
            right += said == [class_names()[item.label].split()[0]]
        apart += captions.get(2 * j) != captions.get(2 * j + 1)
    n = len(pairs)
    return {
        "direction_right": round(100 * right / (2 * n), 1),
        "direction_named": round(100 * named / (2 * n), 1),
        "pairs_told_apart": round(100 * apart / n, 1),
        "example_captions": [captions.get(i) for i in range(4)],
    }


def with_direction_words(blip: Path, out: Path, adapter_std: float = 0.0) -> Path:
    """The shipped captioner with "rising" and "falling" added to its vocabulary (their
    embeddings start near the mean of the others; the pretraining captions never had
    them); with `adapter_std`, temporal adapters drawn from N(0, std) instead of zero."""
    model = VideoBlip.from_pretrained(blip, use_adapters=adapter_std > 0)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.normal_(0, adapter_std)
    words = [w for w in model.tokenizer.get_vocab() if not w.startswith("[")]
    model.tokenizer = blip_tokenizer(
        sorted(words, key=model.tokenizer.get_vocab().get) + list(ORDER_VERBS), out
    )
    model.blip.text_decoder.resize_token_embeddings(len(model.tokenizer))
    model.blip.config.text_config.vocab_size = len(model.tokenizer)
    model.save_pretrained(out)
    return out


def order_gap(model_dir: Path, test: list[VideoItem]) -> float:
    """How far apart the model's memories of a clip and of its reversal are, relative
    to two different clips': mean ||m(up) - m(down)|| over the test pairs, divided by
    the mean distance between consecutive pairs' rising clips."""
    model = VideoBlip.from_pretrained(model_dir).eval()
    pixels = torch.cat([b["pixels"] for b in eval_batches(model, test, FRAMES, progress=False)])
    with torch.no_grad():
        memory = model.encode_video(pixels).flatten(1)
    up, down = memory[0::2], memory[1::2]
    return round(float((up - down).norm(dim=1).mean() / (up[1:] - up[:-1]).norm(dim=1).mean()), 4)


def finetune(setting: dict, train: list[VideoItem], shipped: Path, run_dir: Path) -> Path:
    blip = with_direction_words(
        shipped,
        run_dir.parent / f"base-{setting.get('adapter_std', 0)}",
        setting.get("adapter_std", 0.0),
    )
    cfg = load_config(
        SupervisedConfig,
        None,
        [
            f"model.blip={blip}",
            f"model.use_adapters={str(setting['adapters']).lower()}",
            f"model.prompt={CAPTION_PROMPT}",
            f"data.frames={FRAMES}",
            "data.num_workers=0",
            "run.progress=false",
            f"run.dir={run_dir}",
            f"optim.lr={setting['lr']}",
            f"optim.min_lr={setting['lr'] / 100}",
            f"optim.epochs={setting['epochs']}",
            "optim.batch_size=16",
            "optim.global_batch=32",
            "run.tensorboard=false",
        ],
    )
    final = train_on_class_names(cfg, train, class_names())
    assert final is not None
    return final


SETTINGS = (
    {"name": "no adapters, demo lr", "adapters": False, "lr": 2e-4, "epochs": 12},
    {"name": "adapters, demo lr (REST's setting)", "adapters": True, "lr": 2e-4, "epochs": 12},
    {"name": "adapters, 4x the steps", "adapters": True, "lr": 2e-4, "epochs": 48},
    {"name": "adapters, lr 1e-3", "adapters": True, "lr": 1e-3, "epochs": 12},
    {"name": "adapters, lr 1e-3, 4x the steps", "adapters": True, "lr": 1e-3, "epochs": 48},
    {
        "name": "adapters from N(0, 0.1), lr 1e-3, 4x the steps",
        "adapters": True,
        "lr": 1e-3,
        "epochs": 48,
        "adapter_std": 0.1,
    },
)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train-pairs", type=int, default=24, help="training pairs per object")
    p.add_argument("--test-pairs", type=int, default=8, help="test pairs per object")
    p.add_argument("--settings", type=int, nargs="+", default=list(range(len(SETTINGS))))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        blip, clip_dir = foundation_models(root)
        train = [it for pair in clips(root / "train", args.train_pairs, 1) for it in pair]
        test_pairs = clips(root / "test", args.test_pairs, 2)
        test = [it for pair in test_pairs for it in pair]
        clip = FrozenClip.from_pretrained(clip_dir)
        feats = encode_videos(clip, test, FRAMES, progress=False)
        cosine = [float(feats[2 * j] @ feats[2 * j + 1]) for j in range(len(test_pairs))]
        teachers = {
            "clip_cosine_clip_vs_reversal_min": round(min(cosine), 4),
            "clip_cosine_clip_vs_reversal_mean": round(sum(cosine) / len(cosine), 4),
        }
        print(json.dumps(teachers), flush=True)
        for i in args.settings:
            setting, start = SETTINGS[i], time.time()
            final = finetune(setting, train, blip, root / "runs" / str(i))
            captioner = Captioner.load(
                str(final),
                Decoding(frames=FRAMES, max_new_tokens=8),
                cache_dir=root / "cache",
                device=torch.device("cpu"),
                progress=False,
            )
            scores = direction_scores(captioner(test, SkipReport()), test_pairs)
            scores["order_gap"] = order_gap(final, test)
            steps = setting["epochs"] * len(train) // 32
            rows.append(
                {**setting, "steps": steps, **scores, "seconds": round(time.time() - start, 1)}
            )
            print(json.dumps(rows[-1]), flush=True)
    print(
        f"{'setting':<50}{'steps':>6}{'direction right':>17}{'named':>7}{'pairs apart':>13}"
        f"{'order gap':>11}"
    )
    for r in rows:
        print(
            f"{r['name']:<50}{r['steps']:>6}{r['direction_right']:>16.1f}%{r['direction_named']:>6.1f}%"
            f"{r['pairs_told_apart']:>12.1f}%{r['order_gap']:>11.4f}"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"train_clips": len(train), "test_clips": len(test), **teachers, "rows": rows},
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
