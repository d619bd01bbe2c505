"""Use cases shared by the management API and the CLI: workspaces, keys, apps."""
