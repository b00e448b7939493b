"""Client runtimes: the executors that actually run a mission.

``builtin`` registers them through the ``ua_vp_client_runtimes`` hook:
``dry-run`` (no model), ``command``, ``claude-cli`` and ``codex-cli`` (a
subprocess in the mission workspace, see ``process``) and ``openai`` (an
OpenAI-compatible HTTP endpoint). Each module exposes
``create(profile, settings) -> Executor``.
"""
