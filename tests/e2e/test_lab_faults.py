"""The lab's node faults: a cut link isolates a node until healed; a killed node loses every
process at once (a power loss) and, restarted, runs its pod again."""

from __future__ import annotations

from harness.lab import Lab
from harness.lab_pytest import pods, start_tcp_peers, wait_pods_ready
from harness.lab_workloads import TCP_PORT, sleeper_pod
from harness.procs import wait_for


def test_cut_link_isolates_a_node_until_healed(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    by_node = {p["spec"]["nodeName"]: p for p in start_tcp_peers(lab, ns)}
    src, dst = by_node[lab.nodes[0].name], by_node[lab.nodes[1].name]

    def ask() -> str:
        res = lab.kubectl(
            "exec",
            "-n",
            ns,
            src["metadata"]["name"],
            "--",
            "nc",
            "-w",
            "2",
            dst["status"]["podIP"],
            str(TCP_PORT),
            check=False,
        )
        return res.stdout.strip()

    assert ask() == f"tcp-{dst['metadata']['name']}"
    lab.set_link(1, up=False)
    try:
        assert ask() == "", "a node with its link down must be unreachable"
    finally:
        lab.set_link(1, up=True)
    wait_for(lambda: ask() == f"tcp-{dst['metadata']['name']}", 30, "the healed link to carry traffic")


def test_killed_node_loses_everything_and_restarts_its_pod(lab: Lab, lab_namespace: str) -> None:
    ns, node = lab_namespace, lab.nodes[1]
    lab.apply([sleeper_pod("victim", node.name)], ns)
    before = wait_pods_ready(lab, ns, "app=victim", 1)[0]["status"]["containerStatuses"][0]
    assert node.cgroup_pids(), "the pod's processes live in the node's cgroups"

    lab.kill_node(1)
    assert node.all_pids() == [], "kubelet, containerd, shims and containers all gone"
    assert not any(node.running().values())

    lab.restart_node(1)

    def restarted() -> bool:
        items = pods(lab, ns, "app=victim")
        st = items[0]["status"].get("containerStatuses", [{}])[0] if items else {}
        return bool(st.get("ready")) and st.get("containerID") != before["containerID"]

    wait_for(restarted, 120, "the pod's container to run again on the restarted node")
