# A stand-in for hivekit's own flake, for the meta flake's tests: `lib.mkAgent` takes exactly the
# arguments the meta flake passes and returns them as plain data, so `nix eval` can check every
# agent's identity without nixpkgs (and without a network).
{
  description = "hivekit test stub: lib.mkAgent returns plain data";

  outputs = { self }: {
    lib.version = "1";
    lib.mkAgent = { name, isManager, port, module, env, git }: {
      inherit name isManager port module env git;
      hivekit = self.lib.version;
    };
  };
}
