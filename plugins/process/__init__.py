"""The process backend (plugin ``process``): every agent a supervised child process.

The hive's embedded default: it runs on any Linux machine. The plugin itself lives in
:mod:`hivekit_plugins.process.backend`; this package stays import-light because ``launch``,
the exec shim that sets rlimits and the parent-death signal, runs as a program of its own.
"""
