"""Tests of the disk layer (reconciler/disk/): journaled runs, hostile neighbours, integrity of every byte moved."""
