"""`genact report`: one self-contained HTML page (PNGs embedded, and also written
beside it) from evaluation results and REST runs.

Sections: results next to the papers' numbers (SPEC §7); a t-SNE of caption CLIP
embeddings coloured by class for one or two models; the video-caption cosine
histogram of two models; captions of a few videos across REST rounds (REST Fig. 4).
Needs `pip install genact[report]` (matplotlib, scikit-learn).
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import numpy as np

from genact.errors import DataError
from genact.io import atomic_file, atomic_write_text
from genact.training.rundir import RunDir

# SPEC §7 (REST) and §6 (ReGen): top-1 (top-5) mean ± std
PAPER = {
    "hmdb51": [("REST", "49.7 ± 1.14", ""), ("ReGen", "55.1", "")],
    "ucf101": [("REST", "69.1 ± 0.62", ""), ("ReGen", "76.4", "")],
    "k600-zs": [("REST", "51.7 ± 1.1", "75.2 ± 0.4")],
    "k600-gzs": [("REST", "29.51 ± 0.71", "56.12 ± 0.37"), ("GAR + class labels", "0.76", "")],
    "k400-val": [
        ("REST", "63.9", "81.0"),
        ("CLIP", "53.6", "79.9"),
        ("BLIP captioning", "23.5", "41.7"),
    ],
}
PAPER_FEWSHOT = {
    "hmdb51": [54.0, 59.1, 62.1, 64.0],
    "ucf101": [88.2, 90.2, 92.6, 93.5],
}  # REST, 2/4/8/16 shots


def load_source(path: str | Path) -> dict:
    """An evaluation's results (with its embeddings), a few-shot table, or a REST run
    (its banks and each round's new captions), with a label for the page."""
    src = RunDir(path)
    if src.has_results():
        emb = src.embeddings
        return {
            "kind": "results",
            "name": src.name,
            "results": src.read_results(),
            "embeddings": dict(np.load(emb)) if emb.exists() else {},
        }
    if src.has_fewshot():
        return {"kind": "fewshot", "name": src.name, "fewshot": src.read_fewshot()}
    if src.has_banks():
        rounds = src.bank_rounds()
        return {
            "kind": "run",
            "name": src.name,
            "generated": {r: src.generated_captions(r) for r in rounds[1:]},
            "rounds": [src.bank(r) for r in rounds],
        }
    raise DataError(f"{path}: neither an evaluation's results, a few-shot table, nor a REST run")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def tsne_figure(models: list[dict], split: str) -> bytes:
    """Caption embeddings of `split` (t-SNE, 2-D) coloured by true class, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 5), squeeze=False)
    for ax, m in zip(axes[0], models):
        emb = m["embeddings"][split].astype(np.float32)
        videos = m["results"]["splits"][split]["videos"]
        names = sorted({v["label"] for v in videos})
        labels = np.array([names.index(v["label"]) for v in videos])
        # t-SNE needs 5 points, two of them apart (on identical points sklearn's crashes
        # the process): a model that gives every video one caption falls back to PCA
        if len(emb) >= 5 and len(np.unique(emb, axis=0)) > 1:
            perplexity = float(min(30.0, (len(emb) - 1) / 3))
            xy, how = (
                TSNE(2, perplexity=perplexity, init="pca", random_state=0).fit_transform(emb),
                "t-SNE",
            )
        else:  # too few points for t-SNE: the first two principal axes
            centred = emb - emb.mean(0)
            xy, how = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T, "PCA"
        cmap = plt.get_cmap("tab20")
        for c, name in enumerate(names):
            sel = labels == c
            ax.scatter(xy[sel, 0], xy[sel, 1], color=cmap(c % 20), s=12, label=name)
        if len(names) <= 12:
            ax.legend(fontsize=8, loc="best")
        ax.set_title(f"{m['name']} ({m['results']['method']}): {split}, {how}")
        ax.set_xticks([])
        ax.set_yticks([])
    return _png(fig)


def cosine_figure(models: list[dict], split: str) -> bytes:
    """Histogram of video-caption CLIP cosines per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    values = [
        [
            v["video_caption_cosine"]
            for v in m["results"]["splits"][split]["videos"]
            if v.get("video_caption_cosine") is not None
        ]
        for m in models
    ]
    bins = np.histogram_bin_edges(
        np.concatenate([np.asarray(v, dtype=float) for v in values]), bins=30
    )
    for m, vals in zip(models, values):
        ax.hist(vals, bins=bins, alpha=0.5, label=f"{m['name']} (mean {np.mean(vals):.3f})")
    ax.set_xlabel("CLIP cosine(video, caption)")
    ax.set_ylabel("videos")
    ax.legend()
    return _png(fig)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _repeated_splits(res: dict) -> bool:
    """Whether a result's splits are repetitions of one protocol (split1..3), so that
    their mean ± std means something; other splits (the world's unseen and
    generalized settings) are different questions and are never averaged."""
    names = list(res["splits"])
    return len(names) > 1 and all(re.fullmatch(r"split\d+", n) for n in names)


def _results_section(results: list[dict]) -> str:
    parts = []
    for protocol in dict.fromkeys(r["results"]["protocol"] for r in results):
        ours = [r for r in results if r["results"]["protocol"] == protocol]
        splits = list(dict.fromkeys(k for r in ours for k in r["results"]["splits"]))
        averaged = all(_repeated_splits(r["results"]) for r in ours)
        rows = []
        for r in ours:
            res = r["results"]
            cells = [
                f"{res['splits'][k]['top1']:.2f}" if k in res["splits"] else "-" for k in splits
            ]
            if averaged:
                (m1, s1), (m5, s5) = res["mean_std"]["top1"], res["mean_std"]["top5"]
                cells = [f"{m1:.2f} ± {s1:.2f}", f"{m5:.2f} ± {s5:.2f}", ", ".join(cells)]
            rows.append([f"{r['name']} ({res['method']})", *cells])
        header = (
            ["model", "top-1", "top-5", "splits (top-1)"]
            if averaged
            else ["model", *(f"{k} top-1" for k in splits)]
        )
        paper = PAPER.get(protocol, [])
        if paper and averaged:
            rows += [[f"paper: {name}", t1, t5 or "-", ""] for name, t1, t5 in paper]
        title = "Results and the papers' numbers" if paper and averaged else "Results"
        parts.append(f"<h3>{html.escape(protocol)}: {title}</h3>" + _table(header, rows))
    return "".join(parts)


def _fewshot_section(sources: list[dict]) -> str:
    parts = []
    for s in sources:
        fs = s["fewshot"]
        rows = [
            [f"{s['name']}: {m} shots", f"{v['mean']:.2f} ± {v['std']:.2f}"]
            for m, v in fs["shots"].items()
        ]
        paper = PAPER_FEWSHOT.get(fs["protocol"])
        if paper:
            rows += [[f"paper REST: {m} shots", f"{p:.1f}"] for m, p in zip((2, 4, 8, 16), paper)]
        parts.append(f"<h3>{html.escape(fs['protocol'])}</h3>" + _table(["model", "top-1"], rows))
    return "".join(parts)


def _evolution_section(run: dict, videos: int = 4) -> str:
    rounds = run["rounds"]
    parts = []
    for i in range(min(videos, len(rounds[0].keys))):
        video = rounds[0].keys[i]
        rows = [
            [
                r,
                run["generated"].get(r, {}).get(video, "-"),
                "; ".join(
                    f"{bank.texts[c.text_id]} [{c.source} r{c.round}]" for c in bank.entries[i]
                ),
            ]
            for r, bank in enumerate(rounds)
            if i < len(bank.keys)
        ]
        parts.append(
            f"<h4>{html.escape(video)}</h4>"
            + _table(["round", "the model's new caption", "kept captions (source, round)"], rows)
        )
    return "".join(parts)


def _img(name: str, png: bytes, out_dir: Path) -> str:
    with atomic_file(out_dir / name) as f:
        f.write(png)
    return f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;} "
    "table{border-collapse:collapse;margin:1em 0;}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;} img{max-width:100%;}"
)


def build_report(
    paths: list[str | Path],
    out_dir: str | Path,
    *,
    tables: list[tuple[str, list[str], list[list]]] = (),
) -> Path:
    """Write out_dir/report.html (and its PNGs) from the results, few-shot tables and
    REST runs at `paths`, after the (title, header, rows) `tables` a caller adds (the
    demo's rows and effects); returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [load_source(p) for p in paths]
    results = [s for s in sources if s["kind"] == "results"]
    fewshot = [s for s in sources if s["kind"] == "fewshot"]
    runs = [s for s in sources if s["kind"] == "run"]
    body = [
        "<h1>genact report</h1>",
        "<p>Sources: " + ", ".join(html.escape(str(p)) for p in paths) + "</p>",
    ]
    for title, header, rows in tables:
        body += [f"<h2>{html.escape(title)}</h2>", _table(header, rows)]
    if results:
        body += ["<h2>Results</h2>", _results_section(results)]
    if fewshot:
        body += ["<h2>Few-shot</h2>", _fewshot_section(fewshot)]
    captioned = [r for r in results if r["results"]["method"] != "clip" and r["embeddings"]][:2]
    split = next(iter(captioned[0]["results"]["splits"])) if captioned else None
    captioned = [
        r for r in captioned if split in r["embeddings"]
    ]  # a results folder without them: no plots
    if captioned:
        body += [
            "<h2>Caption embeddings (t-SNE, coloured by class)</h2>",
            _img("tsne.png", tsne_figure(captioned, split), out_dir),
            "<h2>Video-caption cosine</h2>",
            _img("cosine.png", cosine_figure(captioned, split), out_dir),
        ]
    for run in runs:
        body += [
            f"<h2>Caption evolution across REST rounds: {html.escape(run['name'])}</h2>",
            _evolution_section(run),
        ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>genact "
        f"report</title><style>{CSS}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )
    atomic_write_text(out_dir / "report.html", page)
    return out_dir / "report.html"
