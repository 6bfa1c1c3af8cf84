"""templating."""
