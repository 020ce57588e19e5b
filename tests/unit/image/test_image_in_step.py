"""The Dockerfile and the lab's local image builder make the same image: one package list,
the same layout and the same entry point."""

from __future__ import annotations

import json
import re

import pytest

from harness import image


def _dockerfile() -> str:
    return image.DOCKERFILE.read_text()


def _stage(text: str, name: str) -> str:
    m = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert m, f"Dockerfile has no stage {name!r}"
    return m.group(1)


def test_both_read_the_one_package_list() -> None:
    os_stage = _stage(_dockerfile(), "os")
    assert "COPY image/packages.txt" in os_stage
    installs = [ln for ln in os_stage.splitlines() if "apt-get install" in ln]
    assert installs and all("xargs" in ln for ln in installs), "the os stage installs the list, nothing else"
    assert image.PACKAGES_FILE == image.REPO / "image" / "packages.txt"


def test_package_list_is_well_formed_and_has_what_the_sidecars_run() -> None:
    pkgs = image.packages()
    assert len(pkgs) == len(set(pkgs)), "duplicates in image/packages.txt"
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", p) for p in pkgs)
    for needed in (
        "python3",
        "catatonit",
        "e2fsprogs",
        "xfsprogs",
        "btrfs-progs",
        "util-linux",
        "fuse3",
        "libnbd-bin",
        "nbd-client",
        "iproute2",
        "nftables",
    ):
        assert needed in pkgs


@pytest.mark.parametrize("target", ["sidecar", "operator"])
def test_entry_point_is_the_same(target: str) -> None:
    stage = _stage(_dockerfile(), target)
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", stage, flags=re.MULTILINE)
    assert entry, f"stage {target} sets no ENTRYPOINT"
    assert json.loads(entry.group(1)) == image.ENTRYPOINT == image.image_config().entrypoint


def test_layout_is_the_same() -> None:
    text = _dockerfile()
    env = re.search(r"^ENV PYTHONPATH=(\S+)", _stage(text, "sidecar"), flags=re.MULTILINE)
    assert env and env.group(1) == image.PYTHONPATH
    assert f"PYTHONPATH={image.PYTHONPATH}" in image.image_config().env
    for target_dir in image.PYTHONPATH.split(":"):
        assert f"--target {target_dir}" in text, f"the Dockerfile installs nothing into {target_dir}"


def test_operator_target_is_non_root_with_a_named_user() -> None:
    user = re.search(r"^USER (\S+)", _stage(_dockerfile(), "operator"), flags=re.MULTILINE)
    assert user and user.group(1) == f"{image.NONROOT_UID}:{image.NONROOT_UID}"
    # kopf needs a passwd entry for its uid (getpass.getuser()): both builds create the same one.
    assert f"useradd --uid {image.NONROOT_UID}" in _stage(_dockerfile(), "os")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\nb\n", ["a", "b"]),
        ("# comment\n\n a  # trailing\n", ["a"]),
        ("", []),
    ],
)
def test_parse_packages(text: str, expected: list[str]) -> None:
    assert image.parse_packages(text) == expected


def test_both_provide_the_executables_the_pod_builders_name() -> None:
    from hastack_operator.resources import members

    sidecar = _stage(_dockerfile(), "sidecar")
    assert members.GATE_SOURCE == image.GATE_PATH
    assert f"/out/hastack-gate {image.GATE_PATH}" in sidecar
    wrapper = re.search(r"printf '(.*?)' > (\S+)", sidecar)
    assert wrapper and wrapper.group(2) == image.HASTACK_COMMAND
    assert wrapper.group(1).replace("\\n", "\n") == image.HASTACK_WRAPPER
