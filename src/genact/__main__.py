"""`python -m genact` (and so `torchrun -m genact`) runs the command line."""

from genact.cli import main

if __name__ == "__main__":
    main()
