"""A broken third-party plugin: its hookimpl's name is misspelled, so enabling it must fail at
start, naming the plugin, instead of the hook silently never being called."""

from hivekit import hookimpl


@hookimpl
def agent_badgez(hive, agent):  # sic: agent_badges
    return ["never shown"]
