"""What a detector is built from: the detector contract and the context a run hands it, shared bases (one network
scoring whole images, frozen-feature heads, training-free perturb-and-compare embedding sensitivity), the seeded
training loop and its checkpoints, and batch scoring.

May import the ground floor, :mod:`detbench.data` and :mod:`detbench.models`.
"""
