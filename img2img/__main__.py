"""`python -m img2img ...`: the same as the `img2img` command (and what torchrun launches)."""
from .cli import main

if __name__ == "__main__":
    main()
