"""`python -m peergrid`: the command line (`peergrid.cli`)."""

from peergrid.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
