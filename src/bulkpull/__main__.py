"""``python -m bulkpull``: the same command as the ``bulkpull`` script."""

from bulkpull.cli import main

main()
