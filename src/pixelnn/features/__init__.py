"""Pixel and global descriptors computed from images by a pluggable backbone."""
