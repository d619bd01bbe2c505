"""The management API under /manage/v1: workspaces and keys (administrator), apps (workspace keys)."""
