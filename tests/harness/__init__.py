"""Test harnesses shared by every tier: control plane, netns nodes, NBD clients, the lab."""
