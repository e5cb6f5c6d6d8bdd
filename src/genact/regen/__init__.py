"""ReGen: rewards (`rewards`), the policy-gradient trainer (`rl`) and the run (`run`).
Import from the modules; the package imports nothing, so `genact --help` stays fast."""
