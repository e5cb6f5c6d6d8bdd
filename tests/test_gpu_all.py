"""benchmarks/gpu_all.py, the one-run GPU measurement, at tiny sizes on the CPU: every
section runs and writes its keys, its correctness counts are real comparisons with no
mismatch, and it imports nothing a bare GPU machine lacks (torch, transformers,
safetensors and genact only: no PyAV, no test extras)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

AUDIT = """
import json, runpy, sys
sys.argv = ["gpu_all.py", *sys.argv[1:]]
runpy.run_path("benchmarks/gpu_all.py", run_name="__main__")
print("MODULES", json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""

BASELINE = """
import json, sys
import safetensors, torch, transformers
from transformers import BlipForConditionalGeneration, CLIPModel, BertTokenizer, CLIPTokenizer
from torch.utils.flop_counter import FlopCounterMode
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def modules(out: str) -> set[str]:
    line = next(x for x in out.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line[len("MODULES ") :]))


@pytest.mark.slow
def test_smoke_run_writes_every_section_and_imports_nothing_else(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run(
        [sys.executable, "-c", AUDIT, "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    base = subprocess.run(
        [sys.executable, "-c", BASELINE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    allowed = set(json.loads(base.stdout)) | set(sys.stdlib_module_names)
    allowed |= {
        "genact",
        "bench_helpers",
        "captioning",
        "gpu_sections",
        "gpu_training",
        "rest_pipeline",
        "__main__",
    }
    assert modules(run.stdout) - allowed == set()
    sections = json.loads(out.read_text())["sections"]
    assert list(sections) == ["env", "correctness", "generation", "training", "rest_stages"]
    assert not [name for name, rows in sections.items() if "error" in rows]
    for key in ("fp32_tiny", "fp32_blip_base"):
        for kind in ("forced", "natural"):
            counts = sections["correctness"][key][kind]
            assert counts["compared"] >= 100 and counts["mismatches"] == 0
    gen = sections["generation"]
    assert {"4_tokens", "8_tokens"} <= set(gen)
    assert gen["8_tokens"]["speedup_vs_batched"] > 0 and "plain_loop" in gen["8_tokens"]
    assert {"as_shipped", "+text_sdpa", "+fast_adapter"} <= set(sections["training"])
    assert sections["rest_stages"]["projected_hours_1_gpu"]["REST total"] > 0
    table = subprocess.run(
        [sys.executable, "benchmarks/gpu_all.py", "--table", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| as_shipped |" in table and "genact vs plain" in table


def test_a_section_past_its_deadline_keeps_what_it_measured(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_all

    def slow(size, rows):
        rows["first"] = 1
        import time

        time.sleep(5)

    monkeypatch.setitem(gpu_all.SECTIONS, "env", (slow, 0.2))
    result = gpu_all.run(["env"], gpu_all.preset("smoke"), tmp_path / "r.json", 1.0)
    rows = result["sections"]["env"]
    assert rows["first"] == 1 and "deadline" in rows["error"]
    assert json.loads((tmp_path / "r.json").read_text())["sections"]["env"]["first"] == 1
