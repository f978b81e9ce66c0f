package io.devicegateway.ingest;

import java.time.Duration;
import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import jakarta.inject.Singleton;

import io.devicegateway.contract.RejectReason;
import io.devicegateway.v1.MessageKind;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;

/** Ingest meters, registered up front so every series exists (at 0) before the first message. */
@Singleton
public class IngestMetrics {

    private final Map<MessageKind, Counter> ingested = new EnumMap<>(MessageKind.class);
    private final Map<RejectReason, Counter> deadLetters = new EnumMap<>(RejectReason.class);
    private final Timer latency;
    private final Counter kafkaRetries;
    final AtomicInteger inFlight = new AtomicInteger();
    final java.util.concurrent.atomic.AtomicLong inFlightBytes = new java.util.concurrent.atomic.AtomicLong();

    IngestMetrics(MeterRegistry registry) {
        for (MessageKind kind : new MessageKind[] { MessageKind.TELEMETRY, MessageKind.EVENT }) {
            ingested.put(kind, Counter.builder("gateway.ingest.messages")
                    .description("Device messages written to Kafka and acknowledged to the broker")
                    .tag("kind", kind == MessageKind.TELEMETRY ? "telemetry" : "events").register(registry));
        }
        for (RejectReason reason : RejectReason.values()) {
            deadLetters.put(reason, Counter.builder("gateway.ingest.dead.letters")
                    .description("Rejected device messages written to the dead-letter topic")
                    .tag("reason", reason.code()).register(registry));
        }
        latency = Timer.builder("gateway.ingest.latency")
                .description("Time from MQTT receipt to Kafka acknowledgement")
                .publishPercentiles(0.5, 0.95, 0.99).publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofSeconds(30))
                .register(registry);
        kafkaRetries = Counter.builder("gateway.ingest.kafka.retries")
                .description("Records re-sent after Kafka refused or timed out a write").register(registry);
        Gauge.builder("gateway.ingest.in.flight", inFlight, AtomicInteger::get)
                .description("Messages received from MQTT and not yet acknowledged by Kafka").register(registry);
        Gauge.builder("gateway.ingest.in.flight.bytes", inFlightBytes, java.util.concurrent.atomic.AtomicLong::get)
                .description("Payload bytes of the messages in flight").register(registry);
    }

    void ingested(MessageKind kind, long receivedAtNanos) {
        ingested.get(kind).increment();
        latency.record(System.nanoTime() - receivedAtNanos, TimeUnit.NANOSECONDS);
    }

    void deadLettered(RejectReason reason) {
        deadLetters.get(reason).increment();
    }

    void retried() {
        kafkaRetries.increment();
    }
}
