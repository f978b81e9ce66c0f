package io.devicegateway.ingest;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;

import jakarta.annotation.PreDestroy;
import jakarta.inject.Inject;
import jakarta.inject.Singleton;

import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.jboss.logging.Logger;

import com.google.protobuf.UnsafeByteOperations;

import io.devicegateway.contract.DeviceTopic;
import io.devicegateway.contract.Envelopes;
import io.devicegateway.contract.RejectReason;
import io.devicegateway.contract.TopicKind;
import io.devicegateway.dedup.Deduplicator;
import io.devicegateway.platform.kafka.GatewayKafkaConfig;
import io.devicegateway.platform.kafka.KafkaWriters;
import io.devicegateway.platform.kafka.OrderedKafkaWriter;
import io.devicegateway.platform.mqtt.InboundMessage;
import io.devicegateway.platform.mqtt.MqttConnection;
import io.devicegateway.platform.mqtt.MqttSubscription;
import io.devicegateway.session.SessionStore;
import io.devicegateway.v1.DeviceMessage;
import io.devicegateway.v1.MessageKind;

/**
 * MQTT to Kafka, at least once: every device message becomes one Kafka record (key = device id, value =
 * {@link DeviceMessage}) and the MQTT PUBACK is sent only from the Kafka acknowledgement of that record.
 * Records leave in arrival order through one {@link OrderedKafkaWriter}, so each device's order is kept.
 * Bad input becomes a dead-letter record, acknowledged the same way, so it neither stops the stream nor
 * disappears.
 */
@Singleton
public class TelemetryIngest implements MqttSubscription, Deduplicator.Sink {

    private static final Logger LOG = Logger.getLogger(TelemetryIngest.class);
    private static final String PAUSE_HOLDER = "ingest";

    private final IngestConfig config;
    private final GatewayKafkaConfig.Topics topics;
    private final IngestMetrics metrics;
    private final OrderedKafkaWriter kafka;
    private final Deduplicator dedup;
    @Inject
    MqttConnection connection;
    @Inject
    SessionStore sessions;

    TelemetryIngest(IngestConfig config, GatewayKafkaConfig kafkaConfig, IngestMetrics metrics, KafkaWriters writers,
            Deduplicator dedup) {
        this.config = config;
        this.dedup = dedup;
        dedup.sink(this);
        this.topics = kafkaConfig.topics();
        this.metrics = metrics;
        this.kafka = writers.create("ingest", metrics::retried);
    }

    @Override
    public List<String> filters() {
        return config.filters();
    }

    @Override
    public int inFlight() {
        return metrics.inFlight.get();
    }

    @Override
    public void onMessage(InboundMessage message) {
        taken(message);
        DeviceTopic.Parsed parsed = DeviceTopic.parse(message.topic());
        RejectReason rejection = parsed.rejection();
        if (rejection == null && parsed.topic().kind() != TopicKind.TELEMETRY
                && parsed.topic().kind() != TopicKind.EVENTS) {
            rejection = RejectReason.TOPIC_NOT_IN_GRAMMAR; // e.g. a status topic caught by a too-wide filter
        }
        int size = message.payloadBytes().length;
        if (rejection == null && size == 0) {
            rejection = RejectReason.EMPTY_PAYLOAD;
        }
        if (rejection == null && size > config.maxPayloadBytes()) {
            rejection = RejectReason.PAYLOAD_TOO_LARGE;
        }
        if (rejection != null) {
            deadLetter(message, parsed, rejection);
            return;
        }
        DeviceTopic topic = parsed.topic();
        sessions.seen(topic.deviceId(), message.receivedAtMillis());
        MessageKind kind = Envelopes.kindOf(topic.kind());
        DeviceMessage.Builder envelope = envelope(message, topic.deviceId(), kind, topic.subtopic())
                .setPayload(UnsafeByteOperations.unsafeWrap(message.payloadBytes()));
        RecordHeaders headers = headers(topic.deviceId(), message.topic());
        headers.add(Envelopes.HEADER_KIND, topic.kind().level().getBytes(StandardCharsets.UTF_8));
        Mqtt5Properties.apply(message, envelope, headers);
        dedup.readSequence(message, envelope);
        // duplicate removal takes the sequence and epoch from the envelope: a step here may set them instead
        String kafkaTopic = kind == MessageKind.TELEMETRY ? topics.telemetry() : topics.events();
        if (envelope.hasSequence()) {
            headers.add(Envelopes.HEADER_SEQUENCE,
                    Long.toUnsignedString(envelope.getSequence()).getBytes(StandardCharsets.US_ASCII));
            if (envelope.hasSequenceEpoch()) {
                headers.add(Envelopes.HEADER_SEQUENCE_EPOCH,
                        Long.toUnsignedString(envelope.getSequenceEpoch()).getBytes(StandardCharsets.US_ASCII));
            }
        }
        byte[] value = envelope.build().toByteArray();
        if (envelope.hasSequence() && dedup.enabled()) {
            Deduplicator.Ticket ticket = dedup.ticket(topic.deviceId(), envelope.getSequenceEpoch(),
                    envelope.getSequence(), kafkaTopic);
            ticket.attach(new Record(message, kafkaTopic, topic.deviceId(), value, headers, kind, null, ticket));
            dedup.submit(ticket);
            return;
        }
        Record record = new Record(message, kafkaTopic, topic.deviceId(), value, headers, kind, null, null);
        if (!dedup.passThrough(topic.deviceId(), record)) {
            send(record); // the plain path: nothing of this device is waiting in duplicate removal
        }
    }

    /** From duplicate removal, in the device's arrival order: write this copy ({@code mark}: header dedup). */
    @Override
    public void write(Deduplicator.Ticket ticket, String mark) {
        Record record = (Record) ticket.message();
        if (mark != null) {
            record.headers().add(Envelopes.HEADER_DEDUP, mark.getBytes(StandardCharsets.US_ASCII));
        }
        send(record);
    }

    /** From duplicate removal: this copy's sequence is already in Kafka; the broker may forget it. */
    @Override
    public void duplicate(Deduplicator.Ticket ticket) {
        Record record = (Record) ticket.message();
        if (LOG.isDebugEnabled()) {
            LOG.debugf("Dropping a duplicate of %s epoch %s sequence %s", record.key(),
                    Long.toUnsignedString(ticket.epoch()), Long.toUnsignedString(ticket.sequence()));
        }
        record.source().ack();
        released(record.source());
    }

    /**
     * Dead-letters a message another capability received and rejected (a bad status or response), with the same
     * guarantee: the message is acknowledged once its dead-letter record is in Kafka.
     */
    public void reject(InboundMessage message, RejectReason reason) {
        taken(message);
        deadLetter(message, DeviceTopic.parse(message.topic()), reason);
    }

    private void deadLetter(InboundMessage message, DeviceTopic.Parsed parsed, RejectReason reason) {
        if (LOG.isDebugEnabled()) {
            LOG.debugf("Dead-lettering message on %s: %s", message.topic(), reason.code());
        }
        String deviceId = parsed.ok() ? parsed.topic().deviceId() : "";
        DeviceMessage.Builder envelope = envelope(message, deviceId,
                parsed.ok() ? Envelopes.kindOf(parsed.topic().kind()) : MessageKind.MESSAGE_KIND_UNSPECIFIED,
                parsed.ok() ? parsed.topic().subtopic() : "");
        if (reason != RejectReason.PAYLOAD_TOO_LARGE && reason != RejectReason.RESPONSE_TOO_LARGE) {
            envelope.setPayload(UnsafeByteOperations.unsafeWrap(message.payloadBytes()));
        }
        RecordHeaders headers = headers(deviceId, message.topic());
        headers.add(Envelopes.HEADER_REASON, reason.code().getBytes(StandardCharsets.UTF_8));
        headers.add(Envelopes.HEADER_PAYLOAD_SIZE,
                Integer.toString(message.payloadBytes().length).getBytes(StandardCharsets.UTF_8));
        // keyed by device when the id is valid, else by topic, so one source's rejects stay in order
        String key = deviceId.isEmpty() ? message.topic() : deviceId;
        send(new Record(message, topics.dlq(), key, envelope.build().toByteArray(), headers, null, reason, null));
    }

    private DeviceMessage.Builder envelope(InboundMessage message, String deviceId, MessageKind kind, String stream) {
        return Envelopes.envelope(deviceId, kind, stream, message.topic(), message.receivedAtMillis(),
                connection.instanceId(), message.qos(), message.duplicate());
    }

    private static RecordHeaders headers(String deviceId, String mqttTopic) {
        RecordHeaders headers = new RecordHeaders();
        headers.add(Envelopes.HEADER_DEVICE_ID, deviceId.getBytes(StandardCharsets.UTF_8));
        headers.add(Envelopes.HEADER_MQTT_TOPIC, mqttTopic.getBytes(StandardCharsets.UTF_8));
        return headers;
    }

    /** One Kafka write and what to do once Kafka has (or refuses) it. */
    private record Record(InboundMessage source, String topic, String key, byte[] value, RecordHeaders headers,
            MessageKind kind, RejectReason reason, Deduplicator.Ticket ticket) {
    }

    private void send(Record record) {
        kafka.send(new ProducerRecord<>(record.topic(), null, record.key(), record.value(), record.headers()),
                (metadata, error) -> {
                    if (error == null) {
                        written(record);
                    } else {
                        rejectedByKafka(record, error);
                    }
                });
    }

    /** On the producer's I/O thread, once Kafka has the record: now the broker may forget the message. */
    private void written(Record record) {
        if (record.ticket() != null) {
            dedup.written(record.ticket()); // committed in Redis in the background; the PUBACK does not wait for it
        }
        record.source().ack();
        if (record.reason() != null) {
            metrics.deadLettered(record.reason());
        } else {
            metrics.ingested(record.kind(), record.source().receivedAtNanos());
        }
        released(record.source());
    }

    /** Counts a message in; at either bound (messages, payload bytes) reading stops until Kafka catches up. */
    private void taken(InboundMessage message) {
        int count = metrics.inFlight.incrementAndGet();
        long bytes = metrics.inFlightBytes.addAndGet(message.payloadBytes().length);
        if (count >= config.maxInFlight() || bytes >= config.maxInFlightBytes()) {
            connection.pauseInbound(PAUSE_HOLDER);
        }
    }

    /** Exactly once per message taken. Reading resumes whenever both counts are at or below half their bound. */
    private void released(InboundMessage message) {
        int count = metrics.inFlight.decrementAndGet();
        long bytes = metrics.inFlightBytes.addAndGet(-message.payloadBytes().length);
        if (count <= config.maxInFlight() / 2 && bytes <= config.maxInFlightBytes() / 2
                && connection.inboundPausedBy(PAUSE_HOLDER)) {
            connection.resumeInbound(PAUSE_HOLDER);
        }
    }

    /**
     * Kafka refused the record for its size (over the broker's or topic's limit; the writer retries every other
     * refusal until it is written): it becomes a dead letter without its payload. A dead letter Kafka refuses for
     * size is not acknowledged: the broker keeps the message and redelivers it after a reconnect.
     */
    private void rejectedByKafka(Record record, Exception error) {
        if (record.reason() == null) {
            LOG.warnf("Kafka refused a record for %s for its size (%s); dead-lettering it without its payload",
                    record.topic(), error.toString());
            RecordHeaders headers = new RecordHeaders(record.headers().toArray());
            headers.add(Envelopes.HEADER_REASON, RejectReason.KAFKA_REJECTED.code().getBytes(StandardCharsets.UTF_8));
            headers.add(Envelopes.HEADER_PAYLOAD_SIZE,
                    Integer.toString(record.source().payloadBytes().length).getBytes(StandardCharsets.UTF_8));
            byte[] withoutPayload;
            try {
                withoutPayload = DeviceMessage.parseFrom(record.value()).toBuilder().clearPayload().build().toByteArray();
            } catch (com.google.protobuf.InvalidProtocolBufferException e) {
                throw new IllegalStateException(e); // we wrote it ourselves
            }
            send(new Record(record.source(), topics.dlq(), record.key(), withoutPayload, headers, null,
                    RejectReason.KAFKA_REJECTED, record.ticket()));
        } else {
            LOG.errorf("Kafka rejected a dead letter for %s (%s); the broker keeps the message", record.key(),
                    error.toString());
            released(record.source());
        }
    }

    /** Bounded even while Kafka is down: what is not written by then stays unacknowledged on the broker. */
    @PreDestroy
    void close() {
        kafka.flush(Duration.ofSeconds(2));
        kafka.close(Duration.ofSeconds(1));
        dedup.close(Duration.ofMillis(500));
    }
}
