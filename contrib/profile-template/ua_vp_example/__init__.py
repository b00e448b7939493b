"""An example ua-vp profile: ``vp.example.echo``."""
