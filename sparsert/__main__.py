"""``python -m sparsert``: the same as the ``sparsert`` command."""

from sparsert.cli.main import main

raise SystemExit(main())
