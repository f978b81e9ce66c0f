package io.devicegateway.ingest;

import org.apache.kafka.common.header.internals.RecordHeaders;
import org.eclipse.microprofile.reactive.messaging.Message;

import io.devicegateway.dedup.Deduplicator;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.v1.MessageKind;

/**
 * One Kafka write of the ingest and the MQTT message it settles: a device record (telemetry/events) or a dead letter.
 * The payload of the {@code device-records} channel; built by {@link IngestPipeline}, written by {@link IngestWriter}.
 */
public final class DeviceRecord {

    final InboundMessage source;
    final String topic;
    final String key;
    final byte[] value;
    final RecordHeaders headers;
    /** Null for a dead letter. */
    final MessageKind kind;
    /** The dead-letter reason code; null for device data. */
    final String reason;
    final boolean numbered;
    final long sequence;
    final long epoch;
    Deduplicator.Ticket ticket;
    /** The channel message to acknowledge once Kafka has the record when a step wrapped it; else acked through InFlight. */
    Message<?> message;

    DeviceRecord(InboundMessage source, String topic, String key, byte[] value, RecordHeaders headers, MessageKind kind,
            String reason, boolean numbered, long sequence, long epoch) {
        this.source = source;
        this.topic = topic;
        this.key = key;
        this.value = value;
        this.headers = headers;
        this.kind = kind;
        this.reason = reason;
        this.numbered = numbered;
        this.sequence = sequence;
        this.epoch = epoch;
    }

    static DeviceRecord deadLetter(InboundMessage source, String topic, String key, byte[] value, RecordHeaders headers,
            String reason) {
        return new DeviceRecord(source, topic, key, value, headers, null, reason, false, 0, 0);
    }

    /** The Kafka topic it goes to. */
    public String topic() {
        return topic;
    }

    /** The record key: the device id (or, for a dead letter with an invalid id, the MQTT topic). */
    public String key() {
        return key;
    }

    /** The dead-letter reason, or null for device data. */
    public String reason() {
        return reason;
    }

    /** The MQTT message this record settles. */
    public InboundMessage source() {
        return source;
    }
}
