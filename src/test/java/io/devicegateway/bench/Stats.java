package io.devicegateway.bench;

import java.util.Arrays;
import java.util.Locale;

/** Latency samples in nanoseconds; percentiles in milliseconds. */
final class Stats {

    private long[] samples = new long[1 << 16];
    private int count;

    synchronized void add(long nanos) {
        if (count == samples.length) {
            samples = Arrays.copyOf(samples, count * 2);
        }
        samples[count++] = nanos;
    }

    synchronized int count() {
        return count;
    }

    synchronized double percentileMillis(double p) {
        if (count == 0) {
            return Double.NaN;
        }
        long[] sorted = Arrays.copyOf(samples, count);
        Arrays.sort(sorted);
        int index = (int) Math.ceil(p / 100.0 * count) - 1;
        return sorted[Math.max(0, Math.min(count - 1, index))] / 1_000_000.0;
    }

    String json() {
        return String.format(Locale.ROOT, "{\"p50\":%.2f,\"p95\":%.2f,\"p99\":%.2f,\"max\":%.2f}",
                percentileMillis(50), percentileMillis(95), percentileMillis(99), percentileMillis(100));
    }
}
