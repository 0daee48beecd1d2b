"""Benchmarks: each runs our code and its baseline in the same process and prints the ratio."""
