"""``python -m margincal``: the same command as ``margincal``."""

from margincal.cli.app import main

if __name__ == "__main__":
    main()
