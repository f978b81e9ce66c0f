package io.devicegateway.bench;

import java.nio.ByteBuffer;
import java.util.BitSet;
import java.util.HashMap;
import java.util.Map;

/** Counts what arrived per device: delivered, duplicates, out of order, and latency from send. */
final class Tally {

    private final Map<String, BitSet> seen = new HashMap<>();
    private final Map<String, Long> lastSeq = new HashMap<>();
    final Stats latency = new Stats();
    /** Written under the lock, readable without it (publishers poll it for their end-to-end window). */
    private volatile long delivered;
    private long duplicates;
    private long outOfOrder;
    private long lastNanos;

    synchronized void record(String deviceId, ByteBuffer payload) {
        long now = System.nanoTime();
        long seq = Payloads.seq(payload);
        BitSet bits = seen.computeIfAbsent(deviceId, k -> new BitSet());
        if (bits.get((int) seq)) {
            duplicates++;
            return;
        }
        bits.set((int) seq);
        Long last = lastSeq.get(deviceId);
        if (last != null && seq < last) {
            outOfOrder++;
            if (outOfOrder <= 5) {
                System.err.printf("bench: out of order on %s: seq %d after %d%n", deviceId, seq, last);
            }
        }
        lastSeq.put(deviceId, Math.max(seq, last == null ? -1 : last));
        lastNanos = now;
        delivered++;
        latency.add(now - Payloads.sentNanos(payload));
    }

    /** Acknowledged by the broker but never seen here: lost. */
    synchronized long missing(String deviceId, BitSet acknowledged) {
        return missingSet(deviceId, acknowledged).cardinality();
    }

    /** The sequence numbers acknowledged by the broker but never seen here. */
    synchronized BitSet missingSet(String deviceId, BitSet acknowledged) {
        BitSet lost = (BitSet) acknowledged.clone();
        BitSet got = seen.get(deviceId);
        if (got != null) {
            lost.andNot(got);
        }
        return lost;
    }

    long delivered() {
        return delivered;
    }

    synchronized long duplicates() {
        return duplicates;
    }

    synchronized long outOfOrder() {
        return outOfOrder;
    }

    synchronized long lastNanos() {
        return lastNanos;
    }

}
