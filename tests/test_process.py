import platform
import subprocess
import sys

import pytest

FAULTS = """
import resource, sys
import numpy as np
if sys.argv[1] == "reuse":
    from drive_drail.process import reuse_freed_memory
    assert reuse_freed_memory()
a = np.ones(8 << 20)  # 64 MB, faulted in once
del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):  # the same large temporary, made and dropped again
    a = np.ones(8 << 20)
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_reused_freed_memory_is_not_faulted_in_again():
    default, reuse = _faults("default"), _faults("reuse")
    assert default >= 5 * 32  # each 64 MB block mapped afresh: a fault per page at least every 2 MB (huge pages)
    assert reuse < default / 20
