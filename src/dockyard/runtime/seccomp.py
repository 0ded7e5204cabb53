"""The seccomp filter of every container: EPERM for what docker refuses and no capability stops.

What docker's default profile refuses, and no capability already stops, is refused with EPERM.

Docker's profile is an allow list of some 350 system calls. Most of what it leaves out
needs a capability our containers do not get anyway (loading modules, mounting,
rebooting, setting the clock: see :data:`.spec.CAPABILITIES`), and refusing those
twice is harmless. What matters is what *no* capability guards:

- new namespaces: ``unshare``, ``setns``, and ``clone`` with a namespace flag. A user
  namespace hands every capability back inside it, and much kernel code reachable that
  way has had escapes. ``clone3`` answers ENOSYS (as in docker), so that libcs fall back
  to ``clone``, whose flags a filter can see (``clone3`` passes them in memory).
- the kernel keyring (``keyctl``, ``add_key``, ``request_key``), which is not
  namespaced: a container would see and fill the host's.
- ``bpf``, ``perf_event_open``, ``userfaultfd`` and ``io_uring``: large kernel surfaces,
  the last two staples of exploits (docker refuses io_uring since 25.0).
- ``open_by_handle_at``, the "shocker" escape: it opens a file of the host by handle.

A deny list rather than docker's allow list: new system calls work in a build as they
do on the host, and the list says what it refuses and why.
"""

from __future__ import annotations

import errno
import platform
from typing import Any

REFUSED = (
    # namespaces (clone is filtered on its flags below)
    "unshare",
    "setns",
    # not namespaced
    "keyctl",
    "add_key",
    "request_key",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    # large kernel surfaces
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
    # files of the host by handle
    "open_by_handle_at",
    "name_to_handle_at",
    # mounts, old and new API
    "mount",
    "umount2",
    "pivot_root",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "move_mount",
    "mount_setattr",
    # the machine itself
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "iopl",
    "ioperm",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
)

CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
}


def profile() -> dict[str, Any]:
    """The ``linux.seccomp`` section of a runtime spec."""
    # clone's flags are its first argument, but for s390's swapped one
    flags_arg = 1 if platform.machine() in ("s390x", "s390") else 0
    clone_rules = [  # refused if (flags & flag) == flag, for any one namespace flag
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": errno.EPERM,
            "args": [
                {"index": flags_arg, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
            ],
        }
        for flag in CLONE_NAMESPACE_FLAGS.values()
    ]
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": _ARCHES.get(platform.machine(), []),
        "syscalls": [
            {"names": list(REFUSED), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
            *clone_rules,
        ],
    }
