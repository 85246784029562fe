"""torch's huge pages: read back from the kernel, asked for by the commands, recorded in profiles and checked
against them."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from backends.torch_eager import TorchBackend, anon_huge_kib, huge_pages
from latlab.backend import Settings
from latlab.blocks import layer_block
from latlab.modules import build_block
from latlab.process import HUGE_PAGES_ENV

from conftest import LATLAB_EXE, ROOT

SMAPS = """\
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me ac
7f0000000000-7f0000600000 rw-p 00000000 00:00 0
Size:               6144 kB
AnonHugePages:      4096 kB
VmFlags: rd wr mr mw me ac hg
7f0000600000-7f0000700000 r-xp 00000000 08:01 1234                       /usr/lib/libc.so.6
AnonHugePages:         0 kB
"""


def thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "absent"
    return text[text.index("[") + 1:text.index("]")]


needs_thp = pytest.mark.skipif(thp_mode() not in ("always", "madvise"),
                               reason=f"this kernel's transparent huge pages are {thp_mode()}: torch cannot get them")


def test_the_huge_pages_of_the_mapping_holding_an_address_are_read() -> None:
    assert anon_huge_kib(SMAPS, 0x7F0000123456) == 4096
    assert anon_huge_kib(SMAPS, 0x55D0C0000010) == 0
    assert anon_huge_kib(SMAPS, 0x7F0000600000) == 0, "the end of a mapping belongs to the next one"
    assert anon_huge_kib(SMAPS, 0x1000) == 0, "an address in no mapping"


def test_a_torch_runner_records_the_process_state_and_a_gpu_has_none() -> None:
    runner = TorchBackend().prepare(*build_block(layer_block(1, 16, 64, 2, 128)), Settings())
    assert runner.applied["huge_pages"] is huge_pages()
    assert TorchBackend().process_state(Settings(device="cuda")) == {}


def torch_profile(fake_profile: Path, huge: bool) -> Path:
    """The fake profile of this machine, relabelled as torch's, recording ``huge``."""
    data = json.loads(fake_profile.read_text())
    data["backend"] = {"name": "torch", "runtime_version": version("torch")}
    data["applied"] = {"huge_pages": huge}
    fake_profile.write_text(json.dumps(data))
    return fake_profile


@needs_thp
@pytest.mark.parametrize(("asked", "recorded", "needle"), [(None, False, "torch huge_pages: True here vs False"),
                                                          ("0", True, "torch huge_pages: False here vs True")])
def test_the_command_asks_for_huge_pages_unless_told_not_to_and_refuses_a_profile_taken_otherwise(
        fake_profile, asked, recorded, needle) -> None:
    env = {k: v for k, v in os.environ.items() if k != HUGE_PAGES_ENV} | ({HUGE_PAGES_ENV: asked} if asked else {})
    path = torch_profile(fake_profile, recorded)
    result = subprocess.run([str(LATLAB_EXE), "validate", "--profile", str(path), "--archs", "2"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert needle in said and f"{HUGE_PAGES_ENV}=0 or 1" in said
    assert "Traceback" not in result.stderr
