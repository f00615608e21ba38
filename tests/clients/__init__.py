"""The real coding-agent CLIs (Claude Code, Codex) as acceptance clients: pinned installs from npm,
non-interactive runs against a base URL, and a loopback capture server that records what they send."""
