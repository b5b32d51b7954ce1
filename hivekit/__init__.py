"""hivekit: a control plane for a hive of AI agents.

Plugin authors need only this module::

    from hivekit import hookimpl

    @hookimpl
    def agent_badges(hive, agent):
        return ["hello"]

Importing it costs nothing: pluggy is imported when ``hookimpl`` or ``hookspec`` is first used
(a plugin's import), so ``hivekit --help`` and ``hivekit agents`` do not pay for it unless they
load a plugin.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl", "hookspec"]

#: ``hookspec`` marks the declaration of a hook (in :mod:`hivekit.hookspecs`); ``hookimpl``
#: marks a plugin's implementation of one. Both are pluggy markers for the ``hivekit`` project.
_MARKERS = {"hookspec": "HookspecMarker", "hookimpl": "HookimplMarker"}


def __getattr__(name: str) -> object:
    if name in _MARKERS:
        import pluggy

        marker = getattr(pluggy, _MARKERS[name])("hivekit")
        globals()[name] = marker
        return marker
    raise AttributeError(f"module 'hivekit' has no attribute {name!r}")
