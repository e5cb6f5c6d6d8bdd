import json

import pytest
import torch
from transformers import BlipForConditionalGeneration
from transformers.models.blip.modeling_blip import BlipAttention

from genact.inference.processing import blip_transform, saved_training_short_side
from genact.models import VideoBlip
from genact.models.attention import SdpaBlipAttention


@pytest.fixture(scope="module")
def blip_dir(tiny_blip_dir):
    return tiny_blip_dir


def random_adapters(model: VideoBlip, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_static_video_with_zero_adapters_equals_the_image_model(blip_dir):
    image_model = BlipForConditionalGeneration.from_pretrained(blip_dir).eval()
    video_model = VideoBlip.from_pretrained(blip_dir, num_frames=4).eval()
    assert len(video_model.adapters) == 2  # one after each ViT layer
    image = torch.randn(2, 3, 32, 32)
    video = image.unsqueeze(1).expand(-1, 4, -1, -1, -1)
    ids, mask, _ = video_model.tokenize(["a man is playing a guitar", "dog"])
    with torch.no_grad():
        expected = image_model(pixel_values=image, input_ids=ids, attention_mask=mask).logits
        got = video_model.blip.text_decoder(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=video_model.encode_video(video),
        ).logits
        assert torch.allclose(got, expected, atol=1e-5)
        random_adapters(video_model)  # trained adapters do mix frames: the test is not vacuous
        moved = video_model.blip.text_decoder(
            input_ids=ids,
            attention_mask=mask,
            encoder_hidden_states=video_model.encode_video(video),
        ).logits
        assert not torch.allclose(moved, expected, atol=1e-3)


def frame_tokens(model: VideoBlip, frames: torch.Tensor) -> torch.Tensor:
    """The image model's post-layernorm tokens of each frame: (T, 1 + H'W', d)."""
    vision = model.blip.vision_model
    return vision(pixel_values=frames).last_hidden_state


def test_zero_adapters_average_each_frames_final_tokens_over_time(blip_dir):
    """On a moving clip: the cross-attention memory is the mean over T of every frame's
    post-layernorm ViT tokens (not the first frame's, not a mean taken before the
    final layer norm)."""
    model = VideoBlip.from_pretrained(blip_dir, num_frames=4).eval()
    torch.manual_seed(1)
    clip = torch.randn(2, 4, 3, 32, 32)  # every frame different
    with torch.no_grad():
        got = model.encode_video(clip)
        expected = torch.stack([frame_tokens(model, c).mean(0) for c in clip])
        assert torch.allclose(got, expected, atol=1e-5)
        first = torch.stack([frame_tokens(model, c[:1])[0] for c in clip])
        assert not torch.allclose(got, first, atol=1e-2)
        norm = model.blip.vision_model.post_layernorm
        pre_norm_mean = torch.stack(
            [
                norm(
                    model.blip.vision_model.encoder(
                        model.blip.vision_model.embeddings(c)
                    ).last_hidden_state.mean(0)
                )
                for c in clip
            ]
        )
        assert not torch.allclose(got, pre_norm_mean, atol=1e-2)


def test_an_adapter_mixes_each_frame_with_its_two_neighbours_only(blip_dir):
    model = VideoBlip.from_pretrained(blip_dir, num_frames=5)
    random_adapters(model)
    torch.manual_seed(2)
    hidden = torch.randn(5, 1 + 16, 32)  # one clip of T = 5 frames, 4 x 4 patches
    out = model.adapters["0"](hidden, 5)
    changed = hidden.clone()
    changed[4, 1:] += torch.randn(16, 32)  # perturb frame t + 2 = 4 for t = 2
    again = model.adapters["0"](changed, 5)
    assert torch.equal(again[:3], out[:3])  # frames 0-2 do not see frame 4
    assert not torch.allclose(again[3], out[3]) and not torch.allclose(again[4], out[4])
    changed = hidden.clone()
    changed[1, 1:] += torch.randn(16, 32)  # frame t - 1 for t = 2 does reach it
    assert not torch.allclose(model.adapters["0"](changed, 5)[2], out[2])


def test_adapters_leave_cls_token_alone_and_can_be_switched_off(blip_dir):
    model = VideoBlip.from_pretrained(blip_dir, num_frames=4)
    random_adapters(model)
    hidden = torch.randn(2 * 4, 1 + 16, 32)
    out = model.adapters["0"](hidden, 4)
    assert torch.equal(out[:, 0], hidden[:, 0]) and not torch.allclose(out[:, 1:], hidden[:, 1:])
    plain = VideoBlip.from_pretrained(blip_dir, use_adapters=False)
    assert len(plain.adapters) == 0
    subset = VideoBlip.from_pretrained(blip_dir, adapter_layers=[1])
    assert list(subset.adapters) == ["1"]
    with pytest.raises(ValueError, match="outside"):
        VideoBlip.from_pretrained(blip_dir, adapter_layers=[5])


def test_fused_vit_attention_matches_transformers_eager_attention(blip_dir):
    eager = BlipForConditionalGeneration.from_pretrained(blip_dir).vision_model
    model = VideoBlip.from_pretrained(blip_dir, num_frames=2, use_adapters=False)
    fused = model.blip.vision_model
    assert all(
        type(m) is SdpaBlipAttention for m in fused.modules() if isinstance(m, BlipAttention)
    )
    assert any(type(m) is BlipAttention for m in eager.modules())
    pixels = torch.randn(3, 3, 32, 32)
    a, b = eager(pixels).last_hidden_state, fused(pixels).last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    qkv = "encoder.layers.0.self_attn.qkv.weight"
    assert torch.allclose(
        dict(eager.named_parameters())[qkv].grad,
        dict(fused.named_parameters())[qkv].grad,
        rtol=1e-4,
        atol=1e-5,
    )


def test_compiled_adapter_takes_the_shifted_sum_path_with_the_same_result(blip_dir):
    model = VideoBlip.from_pretrained(blip_dir, num_frames=3)
    random_adapters(model)
    adapter = model.adapters["0"]
    hidden = torch.randn(2 * 3, 1 + 16, 32)
    grid = hidden[:, 1:].reshape(2, 3, 4, 4, 32)
    shifted = adapter._shifted_sum(grid).reshape(6, 16, 32)
    eager = adapter(hidden, 3)
    assert torch.allclose(eager[:, 1:], hidden[:, 1:] + shifted, atol=1e-5)
    # dynamo: is_compiling() holds
    traced = torch.compile(adapter, backend="eager", fullgraph=True)(hidden, 3)
    assert torch.allclose(traced, eager, atol=1e-5)


def test_gradients_reach_adapters_vit_and_decoder(blip_dir):
    model = VideoBlip.from_pretrained(blip_dir, num_frames=4)
    out = model(
        torch.randn(2, 4, 3, 32, 32),
        ["a person is dancing", "someone is cooking food"],
        label_smoothing=0.2,
    )
    out.loss.backward()
    for name in [
        "adapters.0.conv.weight",
        "adapters.1.conv.weight",
        "blip.vision_model.encoder.layers.0.mlp.fc1.weight",
        "blip.vision_model.embeddings.patch_embedding.weight",
        "blip.text_decoder.bert.encoder.layer.0.crossattention.self.key.weight",
    ]:
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_loss_covers_caption_tokens_only(blip_dir):
    model = VideoBlip.from_pretrained(blip_dir, num_frames=2).eval()
    captions = ["a man is playing a guitar", "dog"]
    pixels = torch.randn(2, 2, 3, 32, 32)
    out = model(pixels, captions)
    caption_lengths = [
        len(model.tokenizer(c).input_ids) - 1 for c in captions
    ]  # tokens + [SEP], no [CLS]
    assert out.num_tokens.tolist() == caption_lengths
    # by hand: log-probabilities of the caption tokens that follow the prompt
    ids, mask, prompt_len = model.tokenize(captions)
    with torch.no_grad():
        logits = model.blip.text_decoder(
            input_ids=ids, attention_mask=mask, encoder_hidden_states=model.encode_video(pixels)
        ).logits
    logp = logits.log_softmax(-1)
    for b, n in enumerate(caption_lengths):
        expected = sum(logp[b, t - 1, ids[b, t]] for t in range(prompt_len, prompt_len + n))
        assert torch.allclose(out.logprob[b], expected, atol=1e-4)
    assert torch.allclose(out.loss, -out.logprob.sum() / sum(caption_lengths), atol=1e-5)
    smoothed = model(pixels, captions, label_smoothing=0.2)
    uniform_ce = sum(
        -logp[b, t - 1].mean()
        for b, n in enumerate(caption_lengths)
        for t in range(prompt_len, prompt_len + n)
    ) / sum(caption_lengths)
    assert torch.allclose(smoothed.logprob, out.logprob)
    assert torch.allclose(smoothed.loss, 0.8 * out.loss + 0.2 * uniform_ce, atol=1e-5)


@pytest.mark.slow
def test_fitting_a_caption_then_generating_it_back(blip_dir, tmp_path):
    torch.manual_seed(0)
    model = VideoBlip.from_pretrained(blip_dir, num_frames=2)
    pixels = torch.randn(2, 2, 3, 32, 32)
    captions = ["a man is playing a guitar on a stage", "a dog runs in the park"]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for _ in range(80):
        opt.zero_grad()
        model(pixels, captions).loss.backward()
        opt.step()
    model.eval()
    assert model.generate(pixels, num_beams=3) == captions  # prompt stripped, one per clip
    sampled = model.generate(pixels, do_sample=True, num_return_sequences=3, top_k=5)
    assert len(sampled) == 6 and all(isinstance(s, str) for s in sampled)
    # save / load round trip gives identical captions and logits
    random_adapters(model, seed=3)
    before = model.generate(pixels, num_beams=3)
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "genact_video.json").read_text())
    assert saved["num_frames"] == 2 and (tmp_path / "saved" / "adapters.safetensors").exists()
    loaded = VideoBlip.from_pretrained(tmp_path / "saved").eval()
    assert loaded.generate(pixels, num_beams=3) == before
    assert torch.allclose(
        loaded(pixels, captions).logprob, model(pixels, captions).logprob, atol=1e-5
    )
    with pytest.raises(ValueError, match="fixed by the saved model"):
        VideoBlip.from_pretrained(tmp_path / "saved", use_adapters=False)


def test_beam_search_keeps_cross_attention_cache_in_place_with_the_same_captions(
    blip_dir, monkeypatch
):
    """The reference path (transformers' generate): BeamCache skips reordering the
    cross-attention keys / values (identical across a clip's beams); captions and
    scores must equal transformers' own cache's."""
    from transformers.cache_utils import EncoderDecoderCache

    from genact.models.generation import BeamCache

    torch.manual_seed(0)
    model = VideoBlip.from_pretrained(blip_dir, num_frames=2).eval()
    memory = model.encode_video(torch.randn(5, 2, 3, 32, 32))
    calls = []
    monkeypatch.setattr(
        BeamCache,
        "reorder_cache",
        lambda self, idx: calls.append(1) or self.self_attention_cache.reorder_cache(idx),
    )
    fast = model.generate_from_memory(
        memory, num_beams=4, max_new_tokens=8, num_return_sequences=2, decoder="transformers"
    )
    monkeypatch.setattr(BeamCache, "reorder_cache", EncoderDecoderCache.reorder_cache)
    full = model.generate_from_memory(
        memory, num_beams=4, max_new_tokens=8, num_return_sequences=2, decoder="transformers"
    )
    assert calls and fast == full and len(set(fast)) > 1


def test_a_model_runs_at_another_input_size_and_its_own_size_is_unchanged(blip_dir, tmp_path):
    """REST's 224 on BLIP-base's 384, in miniature: 16 on a 32 px model. Position
    embeddings are interpolated to the smaller patch grid; at the model's own size the
    memory is exactly what the plain image model gives."""
    native = VideoBlip.from_pretrained(blip_dir, num_frames=2).eval()
    torch.manual_seed(3)
    clip = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        own = native.encode_video(clip)
        plain = torch.stack(
            [native.blip.vision_model(pixel_values=c).last_hidden_state.mean(0) for c in clip]
        )
    assert torch.equal(own, plain) and blip_transform(native).size == 32
    small = VideoBlip.from_pretrained(blip_dir, num_frames=2, image_size=16).eval()
    assert blip_transform(small).size == 16 and blip_transform(small, train=True).resize_side == 18
    with torch.no_grad():
        memory = small.encode_video(clip[..., :16, :16])
        assert memory.shape == (2, 1 + 4, 32)
        grid = small.blip.vision_model.embeddings.interpolate_pos_encoding(
            torch.zeros(1, 5, 32), 16, 16
        )
        assert grid.shape == (1, 5, 32) and not torch.allclose(
            grid[:, 1:2], native.blip.vision_model.embeddings.position_embedding[:, 1:2]
        )
        assert small.generate(clip[..., :16, :16], max_new_tokens=3)  # captions at the new size
    small.save_pretrained(tmp_path / "m")
    assert VideoBlip.from_pretrained(tmp_path / "m").input_size == 16
    assert saved_training_short_side(tmp_path / "m") == 18
    with pytest.raises(ValueError, match="multiple of the ViT's patch size 8"):
        VideoBlip.from_pretrained(blip_dir, image_size=20)
