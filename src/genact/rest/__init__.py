"""REST: the caption bank (`bank`), CLIP retrieval (`retrieval`), the resumable
stages (`stages`) and Algorithm 1 (`run`). Import from the modules; the package
imports nothing, so `genact --help` stays fast."""
