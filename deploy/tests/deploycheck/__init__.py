"""Offline checks of the talentshare Helm chart and Istio policy (see deploy/README.md)."""
