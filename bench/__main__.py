"""``python -m distbench``: the same entry point as the ``distbench`` console script."""

from distbench.cli import main

if __name__ == "__main__":
    main()
