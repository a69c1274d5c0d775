"""Workspaces: a git repository in which each coding task gets its own worktree and branch,
merged back into the run's branch in dependency order (see ``worktrees``)."""

from metaagent.workspace.git import GitError, ref_safe
from metaagent.workspace.worktrees import Checkout, MergeConflict, Workspace, WorkspaceError

__all__ = ["Checkout", "GitError", "MergeConflict", "Workspace", "WorkspaceError", "ref_safe"]
