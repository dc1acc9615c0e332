"""Config files under attack (issue 15, cause 9): alias bombs, huge files, huge echoed input."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from autolabel.config import MAX_CONFIG_BYTES, MAX_ERROR_CHARS, MAX_YAML_ALIASES, load_config
from autolabel.errors import ConfigError


def alias_bomb(levels: int = 9) -> str:
    """The "billion laughs" in YAML: each level lists the previous one 9 times (~1.3 KB)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"review: {{port: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(alias_bomb())
    assert cfg.stat().st_size < 2000
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="alias") as info:
        load_config(cfg)
    assert time.perf_counter() - t0 < 2.0
    assert len(str(info.value)) <= MAX_ERROR_CHARS
    assert "\n" not in str(info.value)


def test_alias_bomb_under_a_memory_limit_in_a_subprocess(tmp_path):
    """Under RLIMIT_AS = 1 GB the old loader ran out of memory (968 MB seen): now it refuses."""
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(alias_bomb())
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from autolabel.config import load_config\n"
        "from autolabel.errors import ConfigError\n"
        "try:\n"
        f"    load_config({str(cfg)!r})\n"
        "except ConfigError as e:\n"
        "    print('REFUSED', len(str(e)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.startswith("REFUSED")
    assert int(out.stdout.split()[1]) <= MAX_ERROR_CHARS


def test_a_few_aliases_still_work(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("_a: &lease 30\nreview: {lease_seconds: *lease}\n")
    with pytest.raises(ConfigError, match="unknown key '_a'"):  # aliases resolve; key unknown
        load_config(cfg)
    cfg.write_text("review: &r {lease_seconds: 30}\n")
    assert load_config(cfg).review.lease_seconds == 30
    many = "".join(f"k{i}: &k{i} 1\n" for i in range(MAX_YAML_ALIASES + 1))
    many += "refs: [" + ",".join(f"*k{i}" for i in range(MAX_YAML_ALIASES + 1)) + "]\n"
    cfg.write_text(many)
    with pytest.raises(ConfigError, match=f"at most {MAX_YAML_ALIASES} aliases"):
        load_config(cfg)


def test_oversized_config_file_is_refused_before_parsing(tmp_path):
    cfg = tmp_path / "big.yaml"
    cfg.write_text("review:\n  host: 127.0.0.1\n" + "# pad\n" * (MAX_CONFIG_BYTES // 6 + 10))
    with pytest.raises(ConfigError, match="bytes") as info:
        load_config(cfg)
    assert len(str(info.value)) <= MAX_ERROR_CHARS


@pytest.mark.parametrize(
    "text",
    [
        "review: {port: '" + "9" * 100_000 + "x'}\n",
        "review: {host: [" + ",".join(["1"] * 50_000) + "]}\n",
        "review:\n  " + "k" * 100_000 + ": 1\n",
        "review: {port: 1\n" + "x" * 100_000,  # a YAML syntax error quoting the input
    ],
)
def test_echoed_input_in_errors_is_truncated(tmp_path, text):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    msg = str(info.value)
    assert len(msg) <= MAX_ERROR_CHARS, len(msg)
    assert str(cfg) in msg
