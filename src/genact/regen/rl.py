"""ReGen training: self-critical policy gradient on the captioner (SPEC §6).

Per video, n captions are sampled from the current model; each gets the weighted
sum of CLS-R, CLIP-R and GRAMMAR-R; advantage = reward - baseline (the mean of
the other samples' rewards, or the greedy caption's reward); loss =
-mean(advantage * summed token log-prob), plus an optional LM loss on REST
pseudo-captions. The log-probs come from one forward pass through the (DDP) model
with every clip's captions, so gradients are synchronised as in LM training.
"""

from __future__ import annotations

import torch

from genact.config import RegenStepsConfig
from genact.models.clip import FrozenClip
from genact.models.precision import autocast
from genact.regen.rewards import (
    GrammarScorer,
    advantages,
    clip_reward,
    cls_reward,
    standardise,
    text_stats,
)
from genact.training.trainer import CaptionTrainer, pick_caption


class Rewards:
    """The weighted ReGen reward of captions of training videos."""

    def __init__(
        self,
        cfg: RegenStepsConfig,
        clip: FrozenClip,
        class_emb: torch.Tensor,
        labels: torch.Tensor,
        video_feats: torch.Tensor,
        grammar: GrammarScorer | None = None,
    ):
        self.cfg, self.clip, self.grammar = cfg, clip, grammar
        self.class_emb, self.labels, self.video_feats = (
            class_emb.float(),
            labels,
            video_feats.float(),
        )
        self.tau = cfg.tau if cfg.tau is not None else 1.0 / float(clip.model.logit_scale.exp())
        if cfg.w_grammar and grammar is None:
            raise ValueError("regen.w_grammar > 0 needs a grammar model (regen.grammar_model)")

    def __call__(
        self, captions: list[str], videos: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """captions (M strings) of training videos `videos` (M,) -> total (M,), each part
        (M,), and whether CLIP-TAM puts each caption in its video's class (M,) bool."""
        c = self.cfg
        emb = self.clip.encode_texts(captions).float()
        right = (emb @ self.class_emb.T).argmax(-1) == self.labels[videos]
        parts: dict[str, torch.Tensor] = {}
        if c.w_cls:
            parts["cls"] = cls_reward(
                emb, self.class_emb, self.labels[videos], c.cls_form, self.tau
            )
        if c.w_clip:
            parts["clip"] = clip_reward(emb, self.video_feats[videos])
        if c.w_grammar:
            parts["grammar"] = self.grammar(captions)
        weights = {"cls": c.w_cls, "clip": c.w_clip, "grammar": c.w_grammar}
        total = torch.zeros(len(captions))
        for name, r in parts.items():
            total = total + weights[name] * (standardise(r) if c.standardise else r)
        return total, parts, right


class RegenTrainer(CaptionTrainer):
    """CaptionTrainer whose micro-step is the policy-gradient step above."""

    tokenized_captions = False  # it tokenizes its sampled captions itself

    loss_should_fall = False  # a policy-gradient loss: its sign and size follow the advantages

    def __init__(self, *args, rewards: Rewards, regen: RegenStepsConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.rewards, self.regen = rewards, regen

    def _micro_step(
        self, batch: dict, epoch: int
    ) -> tuple[torch.Tensor, float, int, dict[str, float]]:
        """Policy-gradient loss summed over the micro-batch's videos (each video's mean
        over its samples), counted per video; see CaptionTrainer._micro_step."""
        if not len(batch["path"]):
            return (
                sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0,
                0.0,
                0,
                {},
            )
        regen_cfg, n = self.regen, self.regen.samples
        idx = batch["index"]
        pixels = batch["pixels"].to(self.dist.device, non_blocking=True)
        with torch.no_grad(), autocast(self.dist.device, self.optim.precision):
            memory = self.model.encode_video(pixels)
            sampled = self.model.generate_from_memory(
                memory,
                do_sample=True,
                num_return_sequences=n,
                temperature=regen_cfg.temperature,
                top_k=regen_cfg.top_k,
                top_p=regen_cfg.top_p,
                max_new_tokens=regen_cfg.max_new_tokens,
            )
            greedy = (
                self.model.generate_from_memory(
                    memory, num_beams=1, max_new_tokens=regen_cfg.max_new_tokens
                )
                if regen_cfg.baseline == "greedy"
                else None
            )
        videos = idx.repeat_interleave(n)
        reward, parts, right = self.rewards(sampled, videos)
        base = self.rewards(greedy, idx)[0] if greedy is not None else None
        adv = advantages(reward, n, base).to(self.dist.device)
        lm = regen_cfg.lm_weight > 0
        texts = []
        for b, i in enumerate(idx.tolist()):
            texts += sampled[b * n : (b + 1) * n]
            if lm:
                texts.append(pick_caption(self.captions[i], self.run.seed, epoch, i))
        with autocast(self.dist.device, self.optim.precision):
            out = self.ddp(pixels, texts, 0.0)
        per_clip = n + int(lm)
        logprob = out.logprob.view(len(idx), per_clip)
        loss = -(adv.view(len(idx), n) * logprob[:, :n]).mean(1).sum()
        if lm:
            tokens = out.num_tokens.view(len(idx), per_clip)[:, n].clamp(min=1)
            loss = loss + regen_cfg.lm_weight * (-logprob[:, n] / tokens).sum()
        stats = {
            "reward": float(reward.mean()),
            "advantage_std": float(adv.std(unbiased=False)),
            # sampled captions CLIP-TAM puts in the class
            "sampled_class_top1": float(right.float().mean()),
            **{f"reward_{k}": float(v.mean()) for k, v in parts.items()},
            **{
                f"reward_{k}_std": float(v.std(unbiased=False)) for k, v in parts.items()
            },  # before weighting
            **text_stats(sampled),
        }
        return loss, float(len(idx)), len(idx), stats
