# Seeded into every test agent's repo (through [fake] files): the agent's module is plain data
# holding its agent.conf, so evaluating the meta flake shows which commit each agent is pinned at.
{
  outputs = { self }: {
    nixosModules.default = { agentConf = builtins.readFile ./agent.conf; };
  };
}
