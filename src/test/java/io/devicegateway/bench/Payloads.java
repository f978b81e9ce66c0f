package io.devicegateway.bench;

import java.nio.ByteBuffer;

/** Simulator payloads: sequence number and send time (System.nanoTime, one clock for the whole bench JVM). */
final class Payloads {

    static final int HEADER = 16;

    private Payloads() {
    }

    static byte[] make(long seq, int size) {
        ByteBuffer buffer = ByteBuffer.allocate(Math.max(size, HEADER));
        buffer.putLong(seq).putLong(System.nanoTime());
        while (buffer.hasRemaining()) {
            buffer.put((byte) 'x');
        }
        return buffer.array();
    }

    static long seq(ByteBuffer payload) {
        return payload.getLong(0);
    }

    static long sentNanos(ByteBuffer payload) {
        return payload.getLong(8);
    }
}
