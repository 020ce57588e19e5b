"""Pure builders of the lab and the kwok control plane: addressing, node configs, image archives."""

from __future__ import annotations

import hashlib
import json
import tarfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness import kwok, lab_addons, lab_net, lab_nodecfg
from harness.ociarchive import ImageConfig, write_archive, write_layer_from_files


def test_plan_gives_each_node_its_own_address_subnet_and_names() -> None:
    nodes = lab_net.plan(3)
    for attr in ("name", "netns", "host_veth", "ip", "pod_cidr"):
        values = [getattr(n, attr) for n in nodes]
        assert len(set(values)) == 3, attr
    assert all(len(n.host_veth) <= 15 for n in nodes), "Linux interface names are at most 15 bytes"


@pytest.mark.parametrize("count", [0, 4, -1])
def test_plan_refuses_sizes_out_of_range(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 3"):
        lab_net.plan(count)


def test_kubelet_config_carries_this_machines_required_settings(tmp_path: Path) -> None:
    node = lab_net.NodeNet(1)
    cfg = lab_nodecfg.kubelet_config(node, lab_nodecfg.NodePaths(tmp_path), tmp_path / "ca.crt")
    assert cfg["failCgroupV1"] is False and cfg["cgroupDriver"] == "cgroupfs" and cfg["oomScoreAdj"] == 0
    assert (
        cfg["cgroupRoot"]
        != lab_nodecfg.kubelet_config(
            lab_net.NodeNet(0), lab_nodecfg.NodePaths(tmp_path), tmp_path / "ca.crt"
        )["cgroupRoot"]
    )
    assert cfg["imageGCHighThresholdPercent"] == 100, "local images cannot be pulled again"
    assert cfg["address"] == node.ip and cfg["clusterDNS"] == [lab_net.DNS_SERVICE_IP]


def test_containerd_config_is_per_node_and_restricts_oom_score(tmp_path: Path) -> None:
    text = lab_nodecfg.containerd_toml(lab_nodecfg.NodePaths(tmp_path / "n0"), "hastack.local/pause:1")
    doc = tomllib.loads(text)
    runtime = doc["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    assert doc["grpc"]["address"].startswith(str(tmp_path / "n0"))
    assert (
        doc["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "hastack.local/pause:1"
    )


def test_cni_routes_pods_without_masquerade(tmp_path: Path) -> None:
    doc = json.loads(lab_nodecfg.cni_conflist(lab_net.NodeNet(2), lab_nodecfg.NodePaths(tmp_path)))
    bridge = doc["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.214.2.0/24"}]]
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path)), "IPAM state per node, not host-global"


def test_local_pv_is_block_with_node_affinity() -> None:
    disk = lab_addons.Disk("lab-node-1", 0, Path("/x.img"), "/dev/loop7", 1 << 30)
    pv = lab_addons.local_pv(disk)["spec"]
    assert pv["volumeMode"] == "Block" and pv["local"] == {"path": "/dev/loop7"}
    terms = pv["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert terms["values"] == ["lab-node-1"]
    assert lab_addons.storage_class()["volumeBindingMode"] == "WaitForFirstConsumer"


@pytest.mark.parametrize(("ready", "status"), [(True, "True"), (False, "Unknown")])
def test_kwok_ready_patch(ready: bool, status: str) -> None:
    patch = kwok.ready_condition_patch(ready, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    cond = patch["status"]["conditions"][0]
    assert cond["type"] == "Ready" and cond["status"] == status
    assert cond["lastHeartbeatTime"] == "2026-01-02T03:04:05Z"
    node = {"status": {"conditions": [cond]}, "spec": {"taints": [{"key": kwok.UNREACHABLE_TAINT}]}}
    assert kwok.ready_status(node) == status and kwok.has_taint(node, kwok.UNREACHABLE_TAINT)


def test_docker_archive_lists_layers_by_digest(tmp_path: Path) -> None:
    layer = tmp_path / "l.tar"
    digest = write_layer_from_files(
        {"bin/tool": (b"#!/bin/sh\n", 0o755), "bin/alias": ("tool", 0o777)}, layer
    )
    assert digest == hashlib.sha256(layer.read_bytes()).hexdigest()
    again = write_layer_from_files(
        {"bin/alias": ("tool", 0o777), "bin/tool": (b"#!/bin/sh\n", 0o755)}, tmp_path / "m.tar"
    )
    assert again == digest, "layers are reproducible"
    archive = tmp_path / "img.tar"
    write_archive(archive, "hastack.local/t:1", [(layer, digest)], ImageConfig(entrypoint=["/bin/tool"]))
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["hastack.local/t:1"]
        assert config["rootfs"]["diff_ids"] == [f"sha256:{digest}"]
        assert config["config"]["Entrypoint"] == ["/bin/tool"]
        assert tar.extractfile(f"{digest}/layer.tar").read() == layer.read_bytes()  # type: ignore[union-attr]
