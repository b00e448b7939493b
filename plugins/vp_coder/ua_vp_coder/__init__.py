"""CODIE: the ``vp.coder.primary`` profile for ua-vp."""
