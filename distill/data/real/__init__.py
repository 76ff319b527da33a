"""A local copy of NVIDIA's PhysicalAI-Autonomous-Vehicles dataset, read directly from its files
(``clip_index.parquet``, camera and egomotion zips) with zipfile, pyarrow and PyAV: the layout
(``layout.py``), frame selection and decoding (``video.py``), ego poses (``egomotion.py``) and
what the data scripts in ``scripts/`` share (``cli.py``, ``shards.py``).

Why not the official reader ``physical_ai_av``: its ``PhysicalAIAVDatasetInterface`` resolves
every file through ``huggingface_hub`` (a revision looked up on the hub, the hub's cache layout,
and ``features.csv`` / ``metadata/sensor_presence.parquet`` fetched at construction), so it does
not open a plain local copy offline; the few files needed here are simple to read directly.
"""
