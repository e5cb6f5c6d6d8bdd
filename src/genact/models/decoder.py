"""genact's caption decoder: greedy and beam search over BLIP's text decoder, with
BLIP's weights as they are. It returns the token ids transformers' `generate` returns
(tested token for token in fp32) and is the default wherever genact captions.

What makes it faster than `generate` (docs/performance.md):
- cross-attention keys / values are computed once per clip and shared by every beam
  (a clip's beams are query rows of one attention) and by every prompt (`cross_kv`
  once, `decode` per prompt); transformers computes them per beam row;
- self-attention keys / values live in buffers preallocated at prompt + max new
  tokens; attention runs over the whole buffer with the unwritten positions masked,
  so every step has the same shapes (what CUDA graphs need);
- the beam step is tensor operations (transformers' vectorised beam search: 2K
  candidates, finished hypotheses scored with the length penalty, the early-stop
  heuristic); the host waits for the device only every `check_every` steps.

With `compile=True` (GPU) the step is `torch.compile(mode="reduce-overhead")`d and
clips are padded to a power-of-two bucket, so each bucket is captured once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import GenerationConfig

# generation settings that change the search, with the values this decoder implements
# (None, the unset value of transformers 5, means the same); any other value sends a
# model to transformers' generate (see `unsupported`)
_DEFAULTS = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "min_length": 0,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "diversity_penalty": 0.0,
    "num_beam_groups": 1,
    "constraints": None,
    "force_words_ids": None,
}


def unsupported(config: GenerationConfig) -> list[str]:
    """The settings of a model's generation config that this decoder does not implement."""
    return [k for k, v in _DEFAULTS.items() if getattr(config, k, None) not in (None, v)]


def _setting(config: GenerationConfig, name: str, default):
    value = getattr(config, name, None)
    return default if value is None else value


@dataclass
class State:
    """The decoder's buffers for `rows` = clips x beams rows.

    self_k / self_v: per layer (rows, heads, length, head_dim), written step by step;
    cross_k / cross_v: per layer (clips, heads, N, head_dim), written once per batch."""

    self_k: list[torch.Tensor]
    self_v: list[torch.Tensor]
    cross_k: list[torch.Tensor]
    cross_v: list[torch.Tensor]
    # (length,) the buffers' positions on the device: a step's position is a view of one,
    # so no step copies a number from the host (which would wait for the GPU)
    positions: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        k = self.self_k[0]
        self.positions = torch.arange(k.shape[2], device=k.device)

    @property
    def group(self) -> int:
        """Rows per clip (the beams)."""
        return self.self_k[0].shape[0] // self.cross_k[0].shape[0]


class CaptionDecoder:
    """Greedy and beam search over a `BlipTextLMHeadModel` (see the module docstring)."""

    def __init__(
        self,
        text_decoder: torch.nn.Module,
        *,
        eos_id: int,
        pad_id: int,
        compile: bool = False,
        check_every: int = 4,
    ):
        self.lm = text_decoder
        cfg = text_decoder.config
        self.layers = text_decoder.bert.encoder.layer
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.eos_id, self.pad_id = eos_id, pad_id
        self.check_every = check_every
        self.compile = compile
        self._step = torch.compile(self.step, mode="reduce-overhead") if compile else self.step
        self._states: dict[tuple, State] = {}

    # ---- the model --------------------------------------------------------------
    def state(self, memory: torch.Tensor, group: int, length: int) -> State:
        """Buffers for memory (B, N, d) with `group` rows per clip and `length` positions,
        the cross-attention keys / values written. Reused per shape when compiled (CUDA
        graphs need fixed addresses)."""
        b = memory.shape[0]
        shape = (b * group, self.heads, length, self.head_dim)
        key = (shape, tuple(memory.shape), memory.dtype, memory.device)
        state = self._states.get(key) if self.compile else None
        if state is None:
            dtype = (
                torch.get_autocast_dtype(memory.device.type)
                if torch.is_autocast_enabled(memory.device.type)
                else memory.dtype
            )
            n = len(self.layers)
            new = [torch.zeros(shape, dtype=dtype, device=memory.device) for _ in range(2 * n)]
            cross = [None] * (2 * n)
            state = State(new[:n], new[n:], cross[:n], cross[n:])
            if self.compile:
                self._states = {key: state}  # one bucket's buffers at a time
        for i, layer in enumerate(self.layers):
            att = layer.crossattention.self
            kv = (b, -1, self.heads, self.head_dim)
            # contiguous (B, H, N, dh): a transposed view would be copied by every step's matmul
            k = att.key(memory).view(kv).transpose(1, 2).contiguous()
            v = att.value(memory).view(kv).transpose(1, 2).contiguous()
            if state.cross_k[i] is None or not self.compile:
                state.cross_k[i], state.cross_v[i] = k, v
            else:
                state.cross_k[i].copy_(k)
                state.cross_v[i].copy_(v)
            if self.compile:
                torch._dynamo.mark_static_address(state.cross_k[i])
                torch._dynamo.mark_static_address(state.cross_v[i])
                torch._dynamo.mark_static_address(state.self_k[i])
                torch._dynamo.mark_static_address(state.self_v[i])
        return state

    def step(
        self,
        state: State,
        ids: torch.Tensor,
        positions: torch.Tensor,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next-token logits (rows, V) after ids (rows, S) at `positions` (S,); the rows'
        self-attention buffers are first reordered to `source` (rows,) when given
        (the beams' parents)."""
        hidden = self.lm.bert.embeddings(input_ids=ids, position_ids=positions[None])
        length = state.self_k[0].shape[2]
        keys_at = torch.arange(length, device=ids.device)
        allowed = keys_at[None, :] <= positions[:, None]  # (S, L) causal over the buffer
        for i, layer in enumerate(self.layers):
            if source is not None:
                state.self_k[i].copy_(state.self_k[i].index_select(0, source))
                state.self_v[i].copy_(state.self_v[i].index_select(0, source))
            hidden = self._self_attention(layer.attention, hidden, state, i, positions, allowed)
            hidden = self._cross_attention(layer.crossattention, hidden, state, i)
            hidden = layer.output(layer.intermediate(hidden), hidden)
        return self.lm.cls(hidden[:, -1]).float()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(R, S, d) -> (R, heads, S, head_dim)."""
        return x.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)

    def _self_attention(self, block, hidden, state: State, i: int, positions, allowed):
        att = block.self
        q, k, v = (
            self._heads(att.query(hidden)),
            self._heads(att.key(hidden)),
            self._heads(att.value(hidden)),
        )
        state.self_k[i].index_copy_(2, positions, k.to(state.self_k[i].dtype))
        state.self_v[i].index_copy_(2, positions, v.to(state.self_v[i].dtype))
        scores = torch.matmul(q, state.self_k[i].transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(~allowed, float("-inf"))
        context = torch.matmul(scores.softmax(-1), state.self_v[i])
        return block.output(context.transpose(1, 2).flatten(2), hidden)

    def _cross_attention(self, block, hidden, state: State, i: int):
        """A clip's `group` rows attend to its memory as one block of queries."""
        r, s, d = hidden.shape
        g, b = state.group, r // state.group
        q = self._heads(block.self.query(hidden))  # (R, H, S, dh)
        q = q.view(b, g, self.heads, s, self.head_dim).transpose(1, 2).flatten(2, 3)
        scores = torch.matmul(q, state.cross_k[i].transpose(-1, -2)) / math.sqrt(self.head_dim)
        context = torch.matmul(scores.softmax(-1), state.cross_v[i])  # (B, H, G*S, dh)
        context = context.view(b, self.heads, g, s, self.head_dim).permute(0, 2, 3, 1, 4)
        return block.output(context.reshape(r, s, d), hidden)

    # ---- search -----------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        memory: torch.Tensor,
        prompts: list[torch.Tensor],
        *,
        num_beams: int = 3,
        max_new_tokens: int = 30,
        min_new_tokens: int = 1,
        num_return_sequences: int = 1,
    ) -> list[torch.Tensor]:
        """Per prompt (ids (P,)), token ids (B * num_return_sequences, P + L) for memory
        (B, N, d): the prompt, then the generated tokens filled as transformers fills
        them. The cross-attention keys / values are computed once for all prompts."""
        if num_return_sequences > num_beams:
            raise ValueError("num_return_sequences must be at most num_beams")
        b = memory.shape[0]
        padded = self._bucket(b) if self.compile else b
        if padded > b:
            memory = torch.cat([memory, memory.new_zeros(padded - b, *memory.shape[1:])])
        longest = max(p.numel() for p in prompts)
        state = self.state(memory, num_beams, longest + max_new_tokens)
        search = self._greedy if num_beams == 1 else self._beams
        outputs = []
        for prompt in prompts:
            logits = self._prefill(state, prompt, num_beams)
            out = search(
                state, logits, prompt.numel(), max_new_tokens, min_new_tokens, num_return_sequences
            )[: b * num_return_sequences]
            outputs.append(torch.cat([prompt[None].expand(out.shape[0], -1), out], dim=1))
        return outputs

    def _prefill(self, state: State, prompt: torch.Tensor, beams: int) -> torch.Tensor:
        """Run the prompt once per clip, into the buffer rows of its first beam (its
        beams are identical until the first token); (rows, V) logits. The other beams'
        rows need no copy: every first-step candidate extends beam 0 (the others start
        at -1e9), so the first step's reorder fills them from it."""
        clip_rows = State(
            [k[::beams] for k in state.self_k],
            [v[::beams] for v in state.self_v],
            state.cross_k,
            state.cross_v,
        )  # row 0 of each clip's beams: strided views of the buffers
        positions = torch.arange(prompt.numel(), device=prompt.device)
        logits = self.step(clip_rows, prompt[None].expand(state.cross_k[0].shape[0], -1), positions)
        return logits.repeat_interleave(beams, dim=0)

    @staticmethod
    def _bucket(n: int) -> int:
        """Clips per batch rounded up to a power of two (compiled shapes)."""
        return 1 << max(n - 1, 0).bit_length()

    def _next(self, state, tokens, position, source=None):
        """The compiled (or eager) step for one new token per row at `position` (0-d)."""
        return self._step(state, tokens[:, None], position.view(1), source)

    def _log_probs(self, logits: torch.Tensor, step: int, min_new: int) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        if step < min_new:  # transformers' MinNewTokensLengthLogitsProcessor
            logp[:, self.eos_id] = float("-inf")
        return logp

    def _greedy(self, state, logits, prompt_len, max_new, min_new, _n) -> torch.Tensor:
        """transformers' greedy search: argmax, pad after EOS, stop when all rows ended."""
        rows, device = logits.shape[0], logits.device
        out = torch.full((rows, max_new), self.pad_id, dtype=torch.long, device=device)
        running = torch.ones(rows, dtype=torch.bool, device=device)
        ended_at = torch.full((rows,), max_new, dtype=torch.long, device=device)
        for step in range(max_new):
            scores = logits.clone()
            if step < min_new:
                scores[:, self.eos_id] = float("-inf")
            token = torch.where(running, scores.argmax(-1), self.pad_id)
            out[:, step] = token
            ended = running & (token == self.eos_id)
            ended_at = torch.where(ended, step + 1, ended_at)
            running = running & ~ended
            if step + 1 == max_new or (step % self.check_every == 0 and not running.any()):
                break
            logits = self._next(state, token, state.positions[prompt_len + step])
        return out[:, : int(ended_at.max())]

    def _beams(self, state, logits, prompt_len, max_new, min_new, n_return) -> torch.Tensor:
        """transformers' vectorised beam search (generation/utils.py `_beam_search`),
        step for step: the same candidates, scores, early-stop heuristic and fill."""
        k, device = state.group, logits.device
        b, vocab = logits.shape[0] // k, logits.shape[-1]
        cfg = self.lm.generation_config
        penalty = float(_setting(cfg, "length_penalty", 1.0))
        early = _setting(cfg, "early_stopping", False)
        fill = self.pad_id if self.pad_id else self.eos_id  # as transformers picks it
        seq = torch.full((b, k, max_new), fill, dtype=torch.long, device=device)
        scores = torch.zeros(b, k, device=device)
        scores[:, 1:] = -1e9
        best = Hypotheses(
            seq.clone(),
            torch.full((b, k), -1e9, device=device),
            torch.zeros(b, k, dtype=torch.bool, device=device),
            torch.zeros(b, k, dtype=torch.long, device=device),
        )
        open_ = torch.ones(b, 1, dtype=torch.bool, device=device)  # improvement still possible
        top_k = torch.arange(2 * k, device=device) < k
        offset = torch.arange(b, device=device)[:, None] * k
        for step in range(max_new):
            logp = self._log_probs(logits, step, min_new).view(b, k, vocab) + scores[..., None]
            top_lp, top_idx = torch.topk(logp.view(b, -1), 2 * k)
            parent = top_idx // vocab
            cand = torch.take_along_dim(seq, parent[..., None], dim=1)
            cand[:, :, step] = top_idx % vocab
            hits = (cand[:, :, step] == self.eos_id) | (step + 1 >= max_new)
            alive_lp = top_lp + hits.to(torch.float32) * -1.0e9
            keep = torch.topk(alive_lp, k)[1]
            seq = torch.take_along_dim(cand, keep[..., None], dim=1)
            scores = torch.take_along_dim(alive_lp, keep, dim=1)
            source = (torch.take_along_dim(parent, keep, dim=1) + offset).flatten()
            ended_lp = top_lp / ((step + 1) ** penalty)
            full = torch.all(best.done, dim=-1, keepdim=True) & (early is True)
            ended_lp += full.to(torch.float32) * -1.0e9
            ended_lp += (~open_).to(torch.float32) * -1.0e9
            just = hits & top_k[None, :]
            ended_lp += (~just) * -1.0e9
            best = best.merge(cand, ended_lp, just, step + 1)
            span = max_new if early == "never" and penalty > 0.0 else step + 1
            best_running = scores[:, :1] / (span**penalty)
            worst = torch.where(best.done, best.scores.min(dim=1, keepdim=True)[0], -1.0e9)
            open_ = open_ & torch.any(best_running > worst, dim=-1, keepdim=True)
            if step + 1 == max_new:
                break
            if step % self.check_every == 0 and not bool(
                open_.any() & ~(best.done.all() & (early is True)) & ~hits.all()
            ):
                break
            position = state.positions[prompt_len + step]
            logits = self._next(state, seq[:, :, step].flatten(), position, source)
        out = best.tokens[:, :n_return].flatten(0, 1)
        return out[:, : int(best.lengths[:, :n_return].max())]


@dataclass
class Hypotheses:
    """The K best finished captions per clip: tokens (B, K, L), length-penalised scores
    (B, K), whether each slot holds one (B, K), and generated lengths (B, K)."""

    tokens: torch.Tensor
    scores: torch.Tensor
    done: torch.Tensor
    lengths: torch.Tensor

    def merge(self, tokens, scores, done, length: int) -> "Hypotheses":
        """Keep the K best of these and the candidates (B, 2K, ...) that just ended."""
        k = self.scores.shape[1]
        merged_scores = torch.cat([self.scores, scores], dim=1)
        keep = torch.topk(merged_scores, k)[1]

        def pick(a, b):
            both = torch.cat([a, b], dim=1)
            index = keep if both.dim() == 2 else keep[..., None]
            return torch.take_along_dim(both, index, dim=1)

        return Hypotheses(
            pick(self.tokens, tokens),
            torch.take_along_dim(merged_scores, keep, dim=1),
            pick(self.done, done),
            pick(self.lengths, torch.full_like(done, length, dtype=torch.long)),
        )
