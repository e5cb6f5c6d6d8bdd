"""The leaner training step against the step it replaced: SDPA text attention, captions
padded to length buckets, the depth-wise adapter as three 2-D convolutions, token ids
made in the loader's workers. Loss and gradients must equal the old step's."""

import copy

import pytest
import torch
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

from genact.data import VideoItem
from genact.models import VideoBlip
from genact.models.adapter import TemporalAdapter
from genact.models.attention import SdpaBlipTextSelfAttention
from genact.models.caption_text import trim_to_bucket
from genact.training.trainer import CaptionTokens, pick_caption

CAPTIONS = [
    "a man is playing a guitar on a stage",
    "dog",
    "someone is riding a horse in a field with the dog and the man " * 3,  # truncated at 40
    "a woman is cooking",
]


def old_step_loss(model: VideoBlip, pixels, captions, label_smoothing):
    """The step as it was: transformers' eager text attention, captions padded to the
    longest only, the loss written out, the adapter as Conv3d."""
    texts = [f"{model.config.prompt} {c.strip()}" for c in captions]
    enc = model.tokenizer(
        texts, padding="longest", truncation=True, max_length=40, return_tensors="pt"
    )
    ids, mask = enc.input_ids, enc.attention_mask
    ids[:, 0] = model.bos_id
    prompt_len = model.prompt_ids().shape[1]
    out = model.blip.text_decoder(
        input_ids=ids, attention_mask=mask, encoder_hidden_states=model.encode_video(pixels)
    )
    logp = out.logits[:, :-1].float().log_softmax(-1)
    keep = mask[:, 1:].bool()
    keep[:, : prompt_len - 1] = False
    nll = -logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    per_token = (1 - label_smoothing) * nll - label_smoothing * logp.mean(-1)
    return (per_token * keep.float()).sum(), -(nll * keep.float()).sum(1), keep.sum(1)


def as_before(model: VideoBlip) -> VideoBlip:
    """A copy of `model` running the old kernels."""
    old = copy.deepcopy(model)
    for m in old.modules():
        if type(m) is SdpaBlipTextSelfAttention:
            m.__class__ = BlipTextSelfAttention
        if isinstance(m, TemporalAdapter):
            m._temporal_taps = lambda grid, conv=m.conv: conv(grid.permute(0, 4, 1, 2, 3)).permute(
                0, 2, 3, 4, 1
            )
    return old


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_loss_and_gradients_equal_the_old_step(tiny_blip_dir, label_smoothing):
    torch.manual_seed(0)
    model = VideoBlip.from_pretrained(tiny_blip_dir, num_frames=4)
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.normal_(0, 0.2)  # trained adapters, so the temporal mixing is exercised
    old = as_before(model)
    assert sum(type(m) is SdpaBlipTextSelfAttention for m in model.modules()) == 4
    pixels = torch.randn(len(CAPTIONS), 4, 3, 32, 32)
    new_out = model(pixels, CAPTIONS, label_smoothing)
    old_sum, old_logprob, old_tokens = old_step_loss(old, pixels, CAPTIONS, label_smoothing)
    assert model.tokenize(CAPTIONS)[0].shape[1] % 8 == 0  # padded to a bucket
    assert torch.equal(new_out.num_tokens, old_tokens)
    assert torch.allclose(new_out.loss_sum, old_sum, rtol=1e-5, atol=1e-5)
    assert torch.allclose(new_out.logprob, old_logprob, rtol=1e-5, atol=1e-5)
    new_out.loss_sum.backward()
    old_sum.backward()
    pairs = list(zip(model.named_parameters(), old.parameters()))
    assert all(p.grad is not None for (_, p), _ in pairs)
    for (name, p), q in pairs:
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), name


def test_the_adapter_as_three_2d_convolutions_equals_conv3d():
    """Forward and backward at a ViT-B-like width, with frames at both temporal ends."""
    torch.manual_seed(0)
    adapter = TemporalAdapter(96)
    with torch.no_grad():
        adapter.conv.weight.normal_()
        adapter.conv.bias.normal_()
    grid = torch.randn(2, 5, 7, 7, 96, requires_grad=True)
    want = adapter.conv(grid.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
    got = adapter._temporal_taps(grid)
    assert torch.allclose(got, want, atol=1e-5)
    g = torch.randn_like(want)
    wanted = torch.autograd.grad((want * g).sum(), [grid, adapter.conv.weight, adapter.conv.bias])
    gotten = torch.autograd.grad((got * g).sum(), [grid, adapter.conv.weight, adapter.conv.bias])
    for a, b in zip(gotten, wanted):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-4)


def test_the_workers_token_ids_equal_tokenizing_the_picked_captions(fitted, tmp_path):
    """Token ids made in a DataLoader worker, cut to their bucket, are the ids of the
    caption pick_caption gives each video in that epoch."""
    from genact.data.datasets import VideoDataset, make_loader

    root, videos = fitted
    model = VideoBlip.from_pretrained(root / "model")
    items = [VideoItem(str(v)) for v in videos] * 2
    captions = [[CAPTIONS[i], CAPTIONS[(i + 1) % 4]] for i in range(len(items))]
    dataset = VideoDataset(items, 2, tokens=CaptionTokens(model, captions, seed=3))
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        batch = next(iter(make_loader(dataset, len(items), num_workers=1)))
        ids, mask = trim_to_bucket(batch["caption_ids"], batch["caption_mask"])
        picked = [pick_caption(captions[i], 3, epoch, i) for i in range(len(items))]
        want_ids, want_mask, _ = model.tokenize(picked)
        assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask)
