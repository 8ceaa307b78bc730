"""labelmap: uint64 segmentation with supervoxels (DVID's labelmap). Being built: so far the
2x2x2 downsampling kernel of its lower scales."""
