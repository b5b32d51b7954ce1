"""hivekit: a control plane for a hive of AI agents.

Plugin authors need only this module::

    from hivekit import hookimpl

    @hookimpl
    def agent_badges(hive, agent):
        return ["hello"]

Importing it stays cheap (pluggy only), so ``hivekit --help`` stays fast.
"""

import pluggy

__version__ = "0.1.0"

#: Marks a function as the declaration of a hook (used in :mod:`hivekit.hookspecs`).
hookspec = pluggy.HookspecMarker("hivekit")
#: Marks a plugin's function as the implementation of a hook.
hookimpl = pluggy.HookimplMarker("hivekit")

__all__ = ["__version__", "hookimpl", "hookspec"]
