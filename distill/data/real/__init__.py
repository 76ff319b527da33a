"""NVIDIA's PhysicalAI-Autonomous-Vehicles dataset, read through NVIDIA's own devkit
``physical_ai_av`` (``PhysicalAIAVDatasetInterface``, the reader Alpamayo-R1's loader uses) for
the data scripts in ``scripts/``: which copy and how it is opened (``source.py``: streamed from
the hub, a Hugging Face cache folder, or a flat local download read offline through a cache
snapshot of links to it), the samples (``clips.py``: the split's clips, the cameras' frames at
t0-0.3 ... t0 and the ego history at t0-1.5 ... t0 in the ego frame at t0), and what the
scripts share (``cli.py``, ``shards.py``, ``extract.py``, ``ego_history.py``).
"""
