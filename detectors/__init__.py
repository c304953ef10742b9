"""Detector plugins shipped with detbench (installed as ``detbench.detectors``)."""
