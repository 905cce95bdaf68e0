"""`python -m ghostspec` runs the CLI."""

from ghostspec.cli import main

if __name__ == "__main__":
    main()
