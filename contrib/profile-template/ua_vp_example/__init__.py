"""ECHO: the ``vp.example.echo`` profile for ua-vp."""
