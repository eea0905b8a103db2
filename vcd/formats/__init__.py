"""On-disk formats VC3D users already have: OME-Zarr volumes, tifxyz surfaces, overlap graph, volpkg.

Formats know nothing of the daemon or of the algorithms.
"""
