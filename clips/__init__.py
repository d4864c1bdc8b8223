"""The clip's data contract, the bottom layer: what a clip is, what it carries and how it is put to the LLM.

The label vocabulary and its class rules (``vocab``), the metadata schema (``schema``), audio decoding and checks
(``audio``), shard members and their reading and writing (``tar_samples``, ``shard_writer``, ``manifest``,
``members``), tasks and their targets (``tasks``), method 2's metadata text (``metadata``), the one prompt builder
(``prompts``) and the typed examples and batches the model trains on (``examples``). Imports nothing of ours.
"""
