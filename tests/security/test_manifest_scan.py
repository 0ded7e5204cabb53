"""``dockyard capture --from-manifests`` reads YAML from a repository: hostile input.

A repository can plant symlinks to host files (whose content would then be read and
echoed as "images"), a FIFO (a read that never ends), alias bombs and deep nesting.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dockyard.errors import DockyardError
from dockyard.transfer import manifest_images
from dockyard.transfer.manifest_images import scan_paths

POD = "kind: Pod\nspec:\n  containers:\n    - image: {image}\n"


def host_secret(tmp_path: Path) -> Path:
    """A sacrificial "host" file outside the scanned tree, naming an image."""
    secret = tmp_path / "host" / "secret.yaml"
    secret.parent.mkdir()
    secret.write_text(POD.format(image="registry.example/leaked:1"))
    return secret


def test_symlinked_files_and_directories_are_not_followed(tmp_path):
    secret = host_secret(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pod.yaml").write_text(POD.format(image="registry.example/ok:1"))
    (repo / "link.yaml").symlink_to(secret)
    (repo / "hostdir").symlink_to(secret.parent)
    scan = scan_paths([repo])
    assert [str(f.ref) for f in scan.images] == ["registry.example/ok:1"]
    assert not scan.problems


def test_a_directory_flipped_to_a_symlink_while_walked_never_leaks(tmp_path):
    """A thread swaps ``repo/sub`` between a real directory and a symlink to the host
    directory thousands of times while the repository is scanned again and again."""
    secret = host_secret(tmp_path)
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "sub/pod.yaml").write_text(POD.format(image="registry.example/ok:1"))
    real, link, spare = repo / "sub", repo / "sub-link", repo / "sub-real"
    link.symlink_to(secret.parent)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.rename(real, spare)
            os.rename(link, real)  # sub is now the symlink
            os.rename(real, link)
            os.rename(spare, real)

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(300):
            scan = scan_paths([repo])
            assert all("leaked" not in str(f.ref) for f in scan.images)
    finally:
        stop.set()
        flipper.join()


def test_a_fifo_does_not_block_the_scan(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    os.mkfifo(repo / "pipe.yaml")
    (repo / "pod.yaml").write_text(POD.format(image="registry.example/ok:1"))
    assert len(scan_paths([repo]).images) == 1


def test_alias_bomb_is_a_problem_not_a_hang(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "values.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    scan = scan_paths([bomb])
    assert not scan.images
    assert [p.message for p in scan.problems] == [
        "not YAML: document too large (over 100000 values)"
    ]


def test_many_documents_share_one_size_budget(tmp_path):
    doc = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    stream = tmp_path / "many.yaml"
    stream.write_text("---\n".join([doc] * 2000))  # 110 values each: 220,000 in all
    problems = scan_paths([stream]).problems
    assert len(problems) == 1 and "document too large" in problems[0].message


def test_python_tags_run_nothing(tmp_path):
    victim = tmp_path / "pwned"
    hostile = tmp_path / "pod.yaml"
    hostile.write_text(
        f"kind: Pod\nspec: !!python/object/apply:os.system ['touch {victim}']\n"
        "---\nimage: !!python/name:os.system\n"
    )
    scan = scan_paths([hostile])
    assert not victim.exists() and not scan.images
    assert [(p.line, p.message.split(":")[0]) for p in scan.problems] == [(4, "not YAML")]


def test_oversized_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_images, "MAX_FILE_SIZE", 1000)
    big = tmp_path / "big.yaml"
    big.write_text(POD.format(image="a/b:1") + "#" * 2000 + "\n")
    with pytest.raises(DockyardError, match="larger than 1000 bytes"):
        scan_paths([big])
