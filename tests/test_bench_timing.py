"""The CPU timing helpers of pyfastdl.bench."""

import time

from pyfastdl.bench import time_cpu, time_cpu_pair


def test_time_cpu_is_the_median_of_the_calls():
    assert 0.004 <= time_cpu(lambda: time.sleep(0.005), warmup=0, repeats=5) < 0.05


def test_time_cpu_pair_alternates_the_two_calls_and_times_each():
    order = []

    def ours():
        order.append("ours")
        time.sleep(0.002)

    def ref():
        order.append("ref")
        time.sleep(0.006)

    ours_s, ref_s = time_cpu_pair(ours, ref, warmup=1, repeats=4)
    assert order == ["ours", "ref"] * 5
    assert 0.0015 <= ours_s < ref_s and ref_s >= 0.005
