"""Histogram buckets as BPF programs fill them, in words a learner can read.

A histogram in BPF is an array: the program computes a bucket number and adds one to that
slot. The two ways lessons compute it are log2 buckets (BCC's `bpf_log2l()`) and linear steps
(`bytes / 1024`, clamped into the last slot). These say which sizes land where, so a lesson
can predict the kernel's counts and label the bars.
"""
from __future__ import annotations


def log2_bucket(size: int) -> int:
    """The slot `bpf_log2l(size)` picks: the number of bits `size` needs (0 for 0, 7 for 100)."""
    return max(int(size), 0).bit_length()


def log2_range(bucket: int) -> tuple[int, int]:
    """(lowest, highest) size that lands in log2 `bucket`: bucket 7 holds 64..127."""
    if bucket <= 0:
        return 0, 0
    return 1 << (bucket - 1), (1 << bucket) - 1


def log2_labels(n: int) -> list[str]:
    """Labels of log2 buckets 0..n-1: "0", "1", "2-3", "4-7", ... "64-127"."""
    labels = []
    for bucket in range(n):
        low, high = log2_range(bucket)
        labels.append(str(low) if low == high else f"{low}-{high}")
    return labels


def linear_labels(n: int, step: int, open_end: bool = False) -> list[str]:
    """Labels of n linear buckets of width `step`: "0-1023", "1024-2047", ...; with
    `open_end` the last one reads "15360+" because the program clamps big values into it."""
    labels = [f"{i * step}-{(i + 1) * step - 1}" for i in range(n)]
    if open_end and n:
        labels[-1] = f"{(n - 1) * step}+"
    return labels
