"""Where setup.py's `scratchlm-publish` entry point still points; the command is `scratchlm.model_cards.cli`. Delete
this file once setup.py names `scratchlm.model_cards.cli:main`."""

from scratchlm.model_cards.cli import main  # noqa: F401
