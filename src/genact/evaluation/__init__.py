"""Evaluation: CLIP-TAM (`clip_tam`), the protocols and `evaluate`, the few-shot
protocol, caption metrics and the HTML report. Import from the modules; the package
imports nothing, so `genact --help` stays fast."""
