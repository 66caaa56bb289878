"""Datasets as they lie on disk, and making them decodable.

    types.py    Video, Dataset, PreparedVideo: the records passed on to the loaders
    catalog.py  open_dataset(name, root) -> Dataset; one reader per dataset layout (READERS)
    labels.py   label readers (.mat / .m intervals, per-frame masks, .npy, .json)
    probe.py    codec, frame count, fps and size of a video file or frame folder
    prepare.py  prepare_dataset / load_prepared: probe, transcode what DALI cannot decode, JSON manifest
    synth.py    make_synthetic_dataset: a small labelled dataset generated on the spot (walkway or motion scene;
                synth_motion.py, synth_scene.py)
    pack.py     pack_dataset: a small re-encoded (optionally resized) copy in the generic layout
"""
