"""Measurements that print figures: the GPU check, training mechanics, recipe probes, judging
throughput, time caps.

The names below are what the notebooks use; everything else is in the modules of this package.
"""
