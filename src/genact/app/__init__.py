"""`genact app`: a local web page to try a model on a video and to look inside a run
(`pip install genact[app]`; Gradio, analytics off, no network needed)."""
