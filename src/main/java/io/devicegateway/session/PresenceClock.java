package io.devicegateway.session;

import java.util.concurrent.atomic.AtomicLong;

/**
 * Presence versions: microseconds since the epoch at receipt, strictly increasing within one gateway instance.
 * Across instances they order by wall clock, so replicas need synchronised clocks (NTP) to order events for the
 * same device that reach different replicas within the clock skew.
 */
final class PresenceClock {

    private final AtomicLong last = new AtomicLong();

    long next() {
        long now = System.currentTimeMillis() * 1000;
        return last.updateAndGet(prev -> Math.max(prev + 1, now));
    }
}
