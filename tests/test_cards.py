"""Model cards: every final/ a run writes has a Hugging Face model card that carries
the run's real settings, and `genact eval --update-card` adds its results to it."""

import subprocess
import sys

import pytest

from genact.config import RestConfig, load_config
from genact.rest.run import run_rest
from genact.training.card import MODEL_CARD, front_matter
from helpers import tiny_rest_settings

pytestmark = pytest.mark.slow  # a REST run and an evaluation


@pytest.fixture(scope="module")
def final(tmp_path_factory, tiny_blip_dir, tiny_clip_dir):
    root = tmp_path_factory.mktemp("card")
    settings = tiny_rest_settings(root, tiny_blip_dir, tiny_clip_dir)
    cfg = load_config(
        RestConfig, None, [*settings, "optim.lr=3e-4", "rest.keep=2", f"run.dir={root / 'run'}"]
    )
    return run_rest(cfg), root


def test_a_trained_model_has_a_card_with_its_settings(final, tiny_blip_dir, tiny_clip_dir):
    model_dir, root = final
    text = (model_dir / MODEL_CARD).read_text()
    front = front_matter(text)
    assert front["library_name"] == "genact" and front["base_model"] == str(tiny_blip_dir)
    assert {"genact", "rest", "video-captioning"} <= set(front["tags"]) and front["pipeline_tag"]
    for row in (
        "| epochs | 2 |",
        "| global batch | 2 |",
        "| learning rate | 0.0003 -> 2e-08 (cosine) |",
        "| neighbours H | 2 |",
        "| captions kept K | 2 |",
        "| frames per clip (T) | 2 |",
    ):
        assert row in text, row
    assert "training videos: 4 of the 4" in text and f'clip="{tiny_clip_dir}"' in text
    assert "BlipForConditionalGeneration" in text and "## Limitations" in text


def test_eval_update_card_adds_and_replaces_its_row(final, tiny_clip_dir, tmp_path):
    model_dir, root = final
    (tmp_path / "classes.txt").write_text("red\ngreen\nblue\n")
    (tmp_path / "test.txt").write_text("".join(f"v{i}.mp4 {i % 3}\n" for i in range(4)))

    def evaluate(*extra):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "genact",
                "eval",
                "--protocol",
                "list",
                "--data-root",
                str(root / "videos"),
                "--splits",
                str(tmp_path / "test.txt"),
                "--classes",
                str(tmp_path / "classes.txt"),
                "--model",
                str(model_dir),
                "--clip",
                str(tiny_clip_dir),
                "--max-new-tokens",
                "4",
                "--cache-dir",
                str(tmp_path / "c"),
                "--out",
                str(tmp_path / "r"),
                "--quiet",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )

    for _ in range(2):
        out = evaluate("--update-card")
        assert out.returncode == 0, out.stderr
    text = (model_dir / MODEL_CARD).read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| list | genact |")]
    assert (
        len(rows) == 1 and " 1 | " in rows[0]
    )  # one split; the second run replaced the first's row
    assert front_matter(text)["library_name"] == "genact"  # the front matter is kept
    refused = evaluate("--update-card", "--model", "org/hub-id")
    assert refused.returncode == 2 and "local directory" in refused.stderr
