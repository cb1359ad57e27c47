"""Moved to :mod:`bridge.imaging.render`; this documented path (``bridge.render.Renderer``) still works."""


def __getattr__(name: str):
    import bridge.imaging.render as moved

    return getattr(moved, name)
