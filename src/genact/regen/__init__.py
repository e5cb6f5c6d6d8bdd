"""ReGen: RL fine-tuning of the captioner with class, CLIP and grammar rewards."""

from genact.regen.rewards import GrammarScorer, advantages, clip_reward, cls_reward, standardise
from genact.regen.rl import RegenTrainer, Rewards
from genact.regen.run import run_regen

__all__ = ["GrammarScorer", "RegenTrainer", "Rewards", "advantages", "clip_reward", "cls_reward", "run_regen",
           "standardise"]
