package io.devicegateway.ingest;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.inject.Singleton;

import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;

/**
 * Ingest's bound on work between MQTT receipt and settlement (the PUBACK after Kafka, or a message given up for
 * redelivery), in messages and in payload bytes. At either bound reading from the broker stops
 * ({@code pauseInbound("ingest")}); it resumes once both are at half. Shared by the ingest channels and by the dead
 * letters of presence and responses, and the one place that sends an ingested message's PUBACK, exactly once.
 */
@Singleton
public class InFlight {

    static final String PAUSE_HOLDER = "ingest";

    private final MqttConnection connection;
    private final AtomicInteger count = new AtomicInteger();
    private final AtomicLong bytes = new AtomicLong();
    private volatile int maxCount;
    private volatile long maxBytes;

    InFlight(IngestConfig config, MqttConnection connection, MeterRegistry registry) {
        this.connection = connection;
        bounds(config.maxInFlight(), config.maxInFlightBytes());
        Gauge.builder("gateway.ingest.in.flight", count, AtomicInteger::get)
                .description("Messages received from MQTT and not yet acknowledged by Kafka").register(registry);
        Gauge.builder("gateway.ingest.in.flight.bytes", bytes, AtomicLong::get)
                .description("Payload bytes of the messages in flight").register(registry);
    }

    /** Set once at wiring by the inbound connector (its attributes default to {@code gateway.ingest.*}). */
    void bounds(int messages, long payloadBytes) {
        if (messages < 2 || payloadBytes < 2) {
            throw new IllegalArgumentException("in-flight bounds must be at least 2 messages and 2 bytes, not "
                    + messages + " / " + payloadBytes);
        }
        this.maxCount = messages;
        this.maxBytes = payloadBytes;
    }

    int maxCount() {
        return maxCount;
    }

    long maxBytes() {
        return maxBytes;
    }

    /** Counts a message in; at either bound reading stops until enough is settled. */
    void take(InboundMessage message) {
        int c = count.incrementAndGet();
        long b = bytes.addAndGet(message.payloadBytes().length);
        if (c >= maxCount || b >= maxBytes) {
            connection.pauseInbound(PAUSE_HOLDER);
        }
    }

    /** The broker may forget it: PUBACK (QoS 1) and count it out. A second call for the same message does nothing. */
    void ack(InboundMessage message) {
        if (message.settle()) {
            message.ack();
            release(message);
        }
    }

    /** Given up without a PUBACK (the broker redelivers it after a reconnect); counted out once. */
    void abandon(InboundMessage message) {
        if (message.settle()) {
            release(message);
        }
    }

    int count() {
        return count.get();
    }

    private void release(InboundMessage message) {
        int c = count.decrementAndGet();
        long b = bytes.addAndGet(-message.payloadBytes().length);
        if (c <= maxCount / 2 && b <= maxBytes / 2 && connection.inboundPausedBy(PAUSE_HOLDER)) {
            connection.resumeInbound(PAUSE_HOLDER);
        }
    }
}
