"""The CPU timing helpers of pyfastdl.bench."""

import time

from pyfastdl.bench import time_cpu, time_cpu_against


def test_time_cpu_is_the_median_of_the_calls():
    assert 0.004 <= time_cpu(lambda: time.sleep(0.005), warmup=0, repeats=5) < 0.05


def test_time_cpu_against_alternates_the_two_calls_and_times_each(benchmark):
    order = []

    def ours():
        order.append("ours")
        time.sleep(0.002)

    def ref():
        order.append("ref")
        time.sleep(0.006)

    ours_s, ref_s = time_cpu_against(benchmark, ours, ref, rounds=4)
    assert order == ["ref"] + ["ref", "ours"] * 5  # a warm-up, then torch just before each round of ours
    assert 0.0015 <= ours_s < ref_s and ref_s >= 0.005
