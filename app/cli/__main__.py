"""``python -m app.cli``: the same as the ``convscope`` command."""

from app.cli.main import main

raise SystemExit(main())
