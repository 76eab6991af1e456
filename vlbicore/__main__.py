"""``python -m vlbicore`` runs the command-line interface (used by the workflow rules)."""
from .cli import main

raise SystemExit(main())
