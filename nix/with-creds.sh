# Run by the agent's service (nix/agent-base.nix) in front of its command: each credential key
# (`hivekit creds NAME set KEY`, the file $HIVE_CREDS/env/KEY) becomes a variable of the agent's,
# as the process backend passes them. Read at every start: a new key needs only
# `hivekit restart NAME`. A file whose name is no key (a half-written .KEY.new, a name put there
# by hand) is skipped, and so are the names the hive sets itself (hivekit/creds.py refuses them).
for f in "${HIVE_CREDS:-/nonexistent}"/env/*; do
  k=${f##*/}
  case $k in
    '' | [!A-Za-z_]* | *[!A-Za-z0-9_]*) continue ;;
    HIVE_* | LD_* | PATH | HOME | USER | LOGNAME | SHELL | PWD | TERM) continue ;;
  esac
  [ -f "$f" ] && [ ! -L "$f" ] && export "$k=$(cat "$f")"
done
exec "$@"
