"""``python -m sessionvalidator_service``: the command line."""

from sessionvalidator_service.cli import main

raise SystemExit(main())
