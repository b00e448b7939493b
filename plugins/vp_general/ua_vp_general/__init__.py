"""GENERALIST: the ``vp.general.primary`` profile for ua-vp."""
