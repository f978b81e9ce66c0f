package io.devicegateway.ingest;

import java.time.Duration;
import java.util.EnumMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

import jakarta.inject.Singleton;

import io.devicegateway.contract.RejectReason;
import io.devicegateway.v1.MessageKind;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;

/** Ingest meters, registered up front so every series exists (at 0) before the first message. */
@Singleton
public class IngestMetrics {

    private final Map<MessageKind, Counter> ingested = new EnumMap<>(MessageKind.class);
    /** Every reason by code: the gateway's own (registered up front) and those device functions give. */
    private final Map<String, Counter> deadLettersByCode = new ConcurrentHashMap<>();
    private final MeterRegistry registry;
    private final Timer latency;
    private final Counter kafkaRetries;

    IngestMetrics(MeterRegistry registry) {
        this.registry = registry;
        for (MessageKind kind : new MessageKind[] { MessageKind.TELEMETRY, MessageKind.EVENT }) {
            ingested.put(kind, Counter.builder("gateway.ingest.messages")
                    .description("Device messages written to Kafka and acknowledged to the broker")
                    .tag("kind", kind == MessageKind.TELEMETRY ? "telemetry" : "events").register(registry));
        }
        for (RejectReason reason : RejectReason.values()) {
            deadLettersByCode.put(reason.code(), deadLetterCounter(reason.code()));
        }
        latency = Timer.builder("gateway.ingest.latency")
                .description("Time from MQTT receipt to Kafka acknowledgement")
                .publishPercentiles(0.5, 0.95, 0.99).publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofMillis(1)).maximumExpectedValue(Duration.ofSeconds(30))
                .register(registry);
        kafkaRetries = Counter.builder("gateway.ingest.kafka.retries")
                .description("Records re-sent after Kafka refused or timed out a write").register(registry);
    }

    void ingested(MessageKind kind, long receivedAtNanos) {
        ingested.get(kind).increment();
        latency.record(System.nanoTime() - receivedAtNanos, TimeUnit.NANOSECONDS);
    }

    /** By code: a device function's own reasons are registered on first use (their set is the function's). */
    void deadLettered(String code) {
        Counter counter = deadLettersByCode.get(code);
        if (counter == null) {
            counter = deadLettersByCode.computeIfAbsent(code, this::deadLetterCounter);
        }
        counter.increment();
    }

    private Counter deadLetterCounter(String code) {
        return Counter.builder("gateway.ingest.dead.letters")
                .description("Rejected device messages written to the dead-letter topic")
                .tag("reason", code).register(registry);
    }

    void retried() {
        kafkaRetries.increment();
    }
}
