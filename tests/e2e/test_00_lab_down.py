"""`down` of a half-built lab leaves nothing behind. Runs first in the tier (file order), before
the session's lab exists; skipped when a lab someone else brought up is running."""

from __future__ import annotations

import pytest

from harness import lab_images, lab_net, pki
from harness.lab import Lab, LabConfig
from harness.lab_addons import attach_disk
from harness.lab_pytest import LAB_ONLY, cluster_kind


def test_down_of_a_half_built_lab_leaves_nothing(request: pytest.FixtureRequest) -> None:
    if cluster_kind(request.config) == "kind":
        pytest.skip("lab only: this test " + LAB_ONLY)
    lab = Lab(LabConfig(nodes=2))
    if lab.api_healthy():
        pytest.skip("a lab is up (hastack lab up); not tearing it down")
    lab.down()
    assert lab.leftovers() == []
    # Build half a lab: network, control plane, node 0 running, node 1 only configured, a disk.
    lab.dir.mkdir(parents=True)
    lab_net.setup_bridge()
    for net in lab.nets:
        lab_net.setup_node(net, lab.nets)
    lab._start_control_plane()
    ca = pki.CertificateAuthority.load(lab.cp_dir / "pki")
    for node in lab.nodes:
        node.prepare(ca, lab.state()["server"], lab_images.PAUSE_IMAGE)
    lab.nodes[0].start([i.archive for i in lab_images.system_images()])
    attach_disk(lab.nodes[0].name, 0, lab.dir / "disks", 64 << 20)
    assert len(lab.leftovers()) > 5, "the half-built lab should show up as leftovers"

    lab.down()
    assert lab.leftovers() == []
