"""Landlock: after `restrict_writes_to(folder)`, this process and all it starts may create, change
or remove files only beneath `folder` (reading is left alone). No privilege is needed, so it
guards a sandboxed program run by an ordinary user as well as one dropped to `nobody`.

The sandbox runs this module's source inside the program's own interpreter, before the program
(engine.system.sandbox): it must stand alone, on the standard library only. Where the kernel has
no Landlock the call does nothing and says so by its return value.
"""

import ctypes
import os

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # x86_64 and arm64 syscall numbers
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
# Every right that changes the filesystem, by the Landlock ABI that brought it.
_WRITE_RIGHTS = {
    1: sum(1 << bit for bit in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12)),  # write, remove, make
    2: 1 << 13,  # refer: link or rename across folders
    3: 1 << 14,  # truncate
}


class _Ruleset(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none)."""
    return max(0, ctypes.CDLL(None).syscall(_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION))


def restrict_writes_to(folder: str) -> bool:
    """Whether the restriction now holds (False: this kernel has no Landlock)."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = landlock_abi()
    if abi < 1:
        return False
    rights = sum(value for version, value in _WRITE_RIGHTS.items() if version <= abi)
    ruleset = _Ruleset(rights)
    ruleset_fd = libc.syscall(_CREATE_RULESET, ctypes.byref(ruleset), ctypes.sizeof(ruleset), 0)
    if ruleset_fd < 0:
        return False
    folder_fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    try:
        rule = _PathBeneath(rights, folder_fd)
        if libc.syscall(_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            return False
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return libc.syscall(_RESTRICT_SELF, ruleset_fd, 0) == 0
    finally:
        os.close(folder_fd)
        os.close(ruleset_fd)
