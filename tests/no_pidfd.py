"""Preloaded by a fork server in tests/unit/test_job_pool.py: its workers run as on a system
without pidfds (another OS, a kernel before 5.3, a seccomp filter that refuses the call)."""

import os

del os.pidfd_open
