"""genact's caption decoder against transformers' generate: the same token ids, for
greedy and beam search, forced and natural lengths, several prompts and batch sizes."""

import importlib.util
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from genact.models import VideoBlip
from genact.models.decoder import CaptionDecoder

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def peaky(text_decoder, scale: float, eos_bias: float, eos_id: int) -> None:
    """Sharpen a random decoder's distributions and make [SEP] likely, so that captions
    end at different lengths (random weights alone never stop early)."""
    with torch.no_grad():
        for p in text_decoder.parameters():
            p.mul_(scale)
        text_decoder.cls.predictions.bias[eos_id] += eos_bias


def reference(text_decoder, prompt, memory, *, eos, pad, **search):
    """transformers' generate as a user calls it (its own cache, no genact code)."""
    return text_decoder.generate(
        input_ids=prompt[None].expand(memory.shape[0], -1),
        encoder_hidden_states=memory,
        encoder_attention_mask=torch.ones(memory.shape[:2], dtype=torch.long),
        eos_token_id=eos,
        pad_token_id=pad,
        do_sample=False,
        **search,
    )


def generated_lengths(ids, prompt_len, eos, pad):
    g = ids[:, prompt_len:]
    return ((g != eos) & (g != pad)).sum(1)


@pytest.fixture(scope="module")
def peaky_model(tiny_blip_dir):
    model = VideoBlip.from_pretrained(tiny_blip_dir).eval()
    peaky(model.blip.text_decoder, 8.0, 20.0, model.eos_id)
    return model


@pytest.mark.parametrize("beams", [1, 3, 5])
def test_token_ids_equal_transformers_generate_at_tiny_size(peaky_model, beams):
    model = peaky_model
    dec = CaptionDecoder(model.blip.text_decoder, eos_id=model.eos_id, pad_id=model.pad_id)
    prompts = [model.prompt_ids("a video of")[0], model.prompt_ids("someone is")[0]]
    assert prompts[0].numel() != prompts[1].numel()  # one buffer serves both lengths
    torch.manual_seed(beams)
    natural = []
    with torch.no_grad():
        for batch in (1, 5, 32):
            memory = torch.randn(batch, 17, 32)
            # natural lengths, forced lengths, a short limit
            for low, high in ((1, 12), (12, 12), (1, 4)):
                got = dec.decode(
                    memory, prompts, num_beams=beams, max_new_tokens=high, min_new_tokens=low
                )
                for prompt, ids in zip(prompts, got):
                    want = reference(
                        model.blip.text_decoder,
                        prompt,
                        memory,
                        eos=model.eos_id,
                        pad=model.pad_id,
                        num_beams=beams,
                        max_new_tokens=high,
                        min_new_tokens=low,
                    )
                    assert ids.shape == want.shape and torch.equal(ids, want), (batch, low, high)
                    lengths = generated_lengths(want, prompt.numel(), model.eos_id, model.pad_id)
                    if low == high:
                        assert (lengths == high).all()
                    elif high == 12:
                        natural += lengths.tolist()
    # the natural cases did end early, at many different lengths
    assert min(natural) < 6 and len(set(natural)) >= 5


def test_several_returned_beams_equal_transformers(peaky_model):
    model = peaky_model
    memory = torch.randn(6, 17, 32)
    prompt = model.prompt_ids()[0]
    dec = CaptionDecoder(model.blip.text_decoder, eos_id=model.eos_id, pad_id=model.pad_id)
    (got,) = dec.decode(memory, [prompt], num_beams=4, max_new_tokens=10, num_return_sequences=3)
    want = reference(
        model.blip.text_decoder,
        prompt,
        memory,
        eos=model.eos_id,
        pad=model.pad_id,
        num_beams=4,
        max_new_tokens=10,
        num_return_sequences=3,
    )
    assert torch.equal(got, want)
    with pytest.raises(ValueError):
        dec.decode(memory, [prompt], num_beams=2, num_return_sequences=3)


def test_captions_equal_on_both_paths_and_prompts_in_one_call(peaky_model):
    """What callers get: strings from genact's decoder and from the reference path, and
    three prompts in one call equal to three calls."""
    memory = torch.randn(7, 17, 32)
    prompts = ["a video of", "a person is", "someone is"]
    kw = dict(num_beams=3, max_new_tokens=10)
    fast = peaky_model.caption_prompts(memory, prompts, **kw)
    slow = peaky_model.caption_prompts(memory, prompts, decoder="transformers", **kw)
    assert fast == slow
    assert fast == [peaky_model.generate_from_memory(memory, prompt=p, **kw) for p in prompts]
    assert len({c for caps in fast for c in caps}) > 5  # not all the same caption


def test_a_generation_setting_it_lacks_sends_the_model_to_transformers(tiny_blip_dir):
    """A model whose generation config suppresses a token (which genact's decoder does
    not implement) is captioned by transformers, with the token suppressed."""
    torch.manual_seed(0)
    memory = torch.randn(4, 17, 32)
    models = []
    for _ in range(2):
        models.append(VideoBlip.from_pretrained(tiny_blip_dir).eval())
        peaky(models[-1].blip.text_decoder, 8.0, 20.0, models[-1].eos_id)
    plain = models[0].generate_from_memory(memory, max_new_tokens=10)
    first = models[0].tokenizer(plain[0], add_special_tokens=False).input_ids[0]
    other = models[1]
    other.blip.text_decoder.generation_config.suppress_tokens = [first]
    with pytest.warns(UserWarning, match="suppress_tokens"):
        suppressed = other.generate_from_memory(memory, max_new_tokens=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = other.generate_from_memory(memory, max_new_tokens=10, decoder="transformers")
    assert suppressed == want and suppressed[0] != plain[0]


@pytest.mark.slow
def test_token_ids_equal_transformers_generate_at_blip_base_size(tmp_path):
    """BLIP-base's text decoder (12 layers, width 768, 30,524 word pieces) over ViT-B/16
    memories (197 tokens), random weights: forced lengths, then natural ones."""
    spec = importlib.util.spec_from_file_location("bench_helpers", BENCHMARKS / "bench_helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    random_blip = helpers.random_blip
    blip, _ = random_blip(224)
    text = blip.text_decoder.eval()
    eos, pad = blip.config.text_config.sep_token_id, blip.config.text_config.pad_token_id
    dec = CaptionDecoder(text, eos_id=eos, pad_id=pad)
    prompt = torch.tensor([blip.config.text_config.bos_token_id, 5, 6, 7])
    torch.manual_seed(0)
    cases = ((8, 3, 10, 10), (3, 5, 8, 8), (4, 1, 8, 1))
    for scale, bias in ((1.0, 0.0), (2.0, 12.0)):
        if scale != 1.0:
            peaky(text, scale, bias, eos)
        for batch, beams, high, low in cases:
            memory = torch.randn(batch, 197, 768)
            with torch.no_grad():
                (got,) = dec.decode(
                    memory, [prompt], num_beams=beams, max_new_tokens=high, min_new_tokens=low
                )
                want = reference(
                    text,
                    prompt,
                    memory,
                    eos=eos,
                    pad=pad,
                    num_beams=beams,
                    max_new_tokens=high,
                    min_new_tokens=low,
                )
            assert torch.equal(got, want), (scale, batch, beams)
    assert (generated_lengths(want, 4, eos, pad) < 8).all()  # the peaky decoder ended early


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("c++") or shutil.which("g++")),
    reason="torch.compile on CPU needs a C++ compiler",
)
def test_the_compiled_step_gives_the_same_ids_with_clips_padded_to_a_bucket(peaky_model):
    """compile=True: the step through torch.compile (CUDA graphs on a GPU) and 5 clips
    padded to a bucket of 8; the same ids as the eager decoder, and a second call with
    the same shapes compiles nothing new."""
    model = peaky_model
    text = model.blip.text_decoder
    eager = CaptionDecoder(text, eos_id=model.eos_id, pad_id=model.pad_id)
    compiled = CaptionDecoder(text, eos_id=model.eos_id, pad_id=model.pad_id, compile=True)
    torch.manual_seed(0)
    memory = torch.randn(5, 17, 32)
    prompts = [model.prompt_ids("a video of")[0], model.prompt_ids("someone is")[0]]
    with torch.no_grad():
        want = eager.decode(memory, prompts, num_beams=3, max_new_tokens=10)
        for _ in range(2):
            got = compiled.decode(memory, prompts, num_beams=3, max_new_tokens=10)
            assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("penalty, early", [(2.0, False), (-1.0, False), (1.0, True)])
def test_length_penalty_and_early_stopping_as_transformers_applies_them(
    tiny_blip_dir, penalty, early
):
    """The finished hypotheses' scores, the early-stop heuristic and which candidates may
    finish: a length penalty that favours long or short captions and early stopping
    change which hypotheses win; the ids must still equal transformers'."""
    model = VideoBlip.from_pretrained(tiny_blip_dir).eval()
    peaky(model.blip.text_decoder, 8.0, 20.0, model.eos_id)
    text = model.blip.text_decoder
    text.generation_config.length_penalty = penalty
    text.generation_config.early_stopping = early
    dec = CaptionDecoder(text, eos_id=model.eos_id, pad_id=model.pad_id)
    torch.manual_seed(7)
    prompt = model.prompt_ids()[0]
    with torch.no_grad():
        for beams in (3, 5):
            memory = torch.randn(32, 17, 32)
            (got,) = dec.decode(memory, [prompt], num_beams=beams, max_new_tokens=12)
            want = reference(
                text,
                prompt,
                memory,
                eos=model.eos_id,
                pad=model.pad_id,
                num_beams=beams,
                max_new_tokens=12,
                length_penalty=penalty,
                early_stopping=early,
            )
            assert torch.equal(got, want), (penalty, early, beams)
