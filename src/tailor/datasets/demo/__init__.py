"""Small real data shipped with tailor for the demo (see ``CREDITS.md``)."""
