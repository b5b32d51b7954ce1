"""An example third-party hivekit plugin: a config table, a badge, a state key, a command and a
template."""

from __future__ import annotations

import click
from attrs import frozen

from hivekit import hookimpl


@frozen
class ExampleConfig:
    #: Shown as a badge on every agent.
    greeting: str = "hello"
    #: Shown in /api/state as "example".
    shout: bool = False


@hookimpl
def config_schema():
    return ExampleConfig


@hookimpl
def agent_badges(hive, agent):
    config = hive.plugin_config("example")
    text = f"{config.greeting} {agent.name}"
    return [text.upper() if config.shout else text]


@hookimpl
def state_extras(hive, agents):
    return {"example": {"agents_seen": len(agents)}}


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.argument("name")
    def hello(name):
        """Say hello (from the example plugin)."""
        click.echo(f"hello, {name}, from the example plugin")


@hookimpl
def agent_templates(hive):
    return {"greeter": "an agent that greets (the example plugin's template)"}


@hookimpl
def initial_config_files(hive, agent, template):
    if template == "greeter":
        return {"greeting.txt": f"{hive.plugin_config('example').greeting} from {agent.name}\n"}
    return None
